"""Integration tests: real servers over loopback HTTP (Azurite, the simulator, the identity endpoint, local hosts)."""
