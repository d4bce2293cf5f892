"""Defender for Endpoint: its facts (APIs, paths, roles, limits), the clouds and their hosts, where a URL really
connects, the managed identity, the client that sends exactly one request, its typed outcomes, and the gateway
that sends only on a slot of the shared budget."""
