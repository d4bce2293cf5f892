"""The HTTP edge: requests to calls and answers to `func.HttpResponse`, the Entra ID callers, and the OpenAPI
document. The only package that imports `azure.functions`; nothing else in `shared/` imports it."""
