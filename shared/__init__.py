"""The gateway's own library, one package per capability (docs/architecture.md draws them):

    defender/      Defender facts, clouds, credentials, the client, outcomes, the gateway (slot + send)
    tables/        Table Storage clients and chunked values
    answers/       answers, problems, RateLimit headers, correlation ids, the one mapping to statuses
    lookups/       file-alerts lookups: the shared answer, the SHA-256 map, Defender
    asynchronous/  operations, queues, messages, the queue worker, the maintenance sweep
    http/          the HTTP edge, Entra callers, the OpenAPI document (the only user of azure.functions)
    ratelimit/     the shared sliding-log limiter (a small library: reads no settings)

At the top level, what ties them together: the settings catalogue and the Settings, validation, health, runtime.
"""
