"""What a caller hears: an answer as a value, RFC 9457 problems, the RateLimit headers, the correlation id, and the
one mapping from outcomes, refusals and problems to statuses (`mapping.Answers`). No HTTP library: the HTTP edge
sends these answers, the queue worker keeps them as its operations' answers."""
