"""Local development without an Azure tenant: Azurite, a fake managed-identity endpoint,
the Defender for Endpoint simulator and a local Functions host. Never deployed."""
