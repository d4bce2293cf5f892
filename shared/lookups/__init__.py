"""File-alerts lookups, the one path an HTTP GET and a queued lookup both take: a SHA-1 or a SHA-256, answered from
the shared answer (Table Storage, TTL), the SHA-256 -> SHA-1 map, or Defender."""
