"""Asynchronous work: operations (their records and the store contract, in Table Storage or in memory), the
queues, the request message format and queue names, operations taken over HTTP, the queue worker and the
maintenance sweep. Imports nothing from the HTTP package."""
