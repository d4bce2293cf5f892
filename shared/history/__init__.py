"""The last hour of the operator page: what the gateway did per minute, kept at a bounded cost.

Admissions are not kept here: the rate limiter's sliding log already holds them for its longest window. What is
stored nowhere else is counted here once a minute: refusals by the gateway and Defender's 429s per API and tenant
(`counters.MinuteCounters`, on the call path, flushed at most once a minute per instance), and the waiting queues'
depths and the oldest pending age per API (written by the maintenance sweep). `store.py` is the contract and its
in-memory twin, `table_store.py` the Table Storage one, `series.py` turns both into the page's per-minute series.
"""
