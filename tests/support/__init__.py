"""Helpers the tests share, one module per role:

    inputs     valid create bodies and request messages
    scripted   Defender scripted at the transport, a static credential, hand-driven clocks, a recording store
    rigs       the app in process (runtime.compose over the scripted Defender and the in-memory stores)
    servers    clients of the real servers (simulator and identity admin, the gateway over HTTP, its queue)

Fixtures that start the servers are tests/integration/conftest.py's.
"""
