"""The sliding-log arithmetic, without storage."""

from __future__ import annotations

from shared.ratelimit.decision import Reason
from shared.ratelimit.sliding_log import LogState, evaluate, merge, missing_from
from tests.support.scripted import policy

T0 = 1_800_000_000_000  # ms


def run(windows: str, times_ms: list[int], margin_ms: int = 0) -> list[bool]:
    """Offer one call at each time; return which were admitted."""
    p = policy(windows)
    state = LogState()
    admitted = []
    for now in times_ms:
        verdict = evaluate(p, margin_ms, state, now)
        admitted.append(verdict.admitted)
        state = verdict.state
    return admitted


def test_nth_admitted_then_refused_until_oldest_leaves_window_plus_margin() -> None:
    # 3 per 10 s, margin 2 s: the first call at T0 frees its slot at exactly T0 + 12 s.
    times = [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 11_999, T0 + 12_000, T0 + 12_000]
    assert run("3/10", times, margin_ms=2000) == [True, True, True, False, False, True, False]


def test_log_keeps_only_what_windows_can_count() -> None:
    p = policy("2/1,3/5")
    state = LogState()
    for now in (T0, T0 + 1000, T0 + 2000, T0 + 7000, T0 + 20_000):
        state = evaluate(p, 0, state, now).state
    # Only the newest max(limit) = 3 entries are kept, and nothing older than the longest window.
    assert state.admissions_ms == (T0 + 20_000,)


def test_window_states_after_admission() -> None:
    p = policy("3/10,5/60")
    state = LogState()
    verdict = evaluate(p, 0, state, T0)
    verdict = evaluate(p, 0, verdict.state, T0 + 4_500)
    short, long = verdict.windows
    assert (short.name, short.limit, short.window_seconds, short.remaining, short.reset_seconds) == \
        ("10s", 3, 10, 1, 6)  # the T0 call leaves at T0 + 10 s: 5.5 s from now, rounded up
    assert (long.name, long.remaining, long.reset_seconds) == ("60s", 3, 56)


def test_refusal_gives_retry_after_of_the_latest_full_window() -> None:
    p = policy("2/10,3/60")
    state = LogState((T0, T0 + 20_000, T0 + 30_000))
    verdict = evaluate(p, 0, state, T0 + 31_000)
    # The 10 s window has room again (its ring [+20 s, +30 s] frees at +30 s); the 60 s one is full until T0 + 60 s.
    assert not verdict.admitted and verdict.reason is Reason.RATE_LIMITED
    assert verdict.retry_after == 29
    assert verdict.state == state


def test_block_refuses_and_retry_after_covers_it() -> None:
    p = policy("5/10")
    verdict = evaluate(p, 0, LogState(blocked_until_ms=T0 + 7_001), T0)
    assert (verdict.admitted, verdict.reason, verdict.retry_after) == (False, Reason.BLOCKED, 8)
    after = evaluate(p, 0, LogState(blocked_until_ms=T0 + 7_001), T0 + 7_001)
    assert after.admitted and after.state.blocked_until_ms == 0


def test_entries_from_a_clock_running_ahead_stay_ordered_and_count() -> None:
    p = policy("2/10")
    state = LogState((T0 + 5_000,))  # written by an instance whose clock is 5 s ahead
    verdict = evaluate(p, 0, state, T0)
    assert verdict.admitted and verdict.state.admissions_ms == (T0, T0 + 5_000)
    again = evaluate(p, 0, verdict.state, T0 + 10_000)  # T0 leaves; the future entry still counts
    assert again.admitted and again.state.admissions_ms == (T0 + 5_000, T0 + 10_000)
    refused = evaluate(p, 0, again.state, T0 + 10_001)
    assert not refused.admitted and refused.retry_after == 5  # T0 + 5 s + 10 s - now = 4.999 s


def test_never_more_than_limit_in_any_window_plus_margin_under_dense_offers() -> None:
    p = policy("4/3,7/10")
    margin = 500
    state = LogState()
    admitted = []
    for now in range(T0, T0 + 60_000, 37):
        verdict = evaluate(p, margin, state, now)
        if verdict.admitted:
            admitted.append(now)
            state = verdict.state
    for limit, span in ((4, 3_500), (7, 10_500)):
        for i in range(limit, len(admitted)):
            assert admitted[i] - admitted[i - limit] >= span
    assert len(admitted) >= 7 * (60_000 // 10_500)


def test_merge_restores_what_the_store_lost_without_counting_twice() -> None:
    stored = LogState((T0 + 3000,), blocked_until_ms=0, since_ms=T0 + 2500)  # re-created after a loss
    remembered = LogState((T0, T0 + 1000, T0 + 1000, T0 + 3000), blocked_until_ms=T0 + 9000, since_ms=0)
    merged = merge(stored, remembered)
    # Two instances admitted at T0 + 1000: both stay. T0 + 3000 is in both: once.
    assert merged.admissions_ms == (T0, T0 + 1000, T0 + 1000, T0 + 3000)
    assert merged.blocked_until_ms == T0 + 9000
    assert merged.since_ms == T0 + 2500  # memory cannot vouch for what others did meanwhile
    assert missing_from(stored, merged) == 3
    assert merge(merged, remembered) == merged and missing_from(merged, merged) == 0


def test_new_state_admits_its_share_until_the_window_has_passed_once() -> None:
    p = policy("4/10")
    state = LogState(since_ms=T0)
    admitted = []
    for now in (T0, T0 + 1, T0 + 2):
        verdict = evaluate(p, 1000, state, now, new_state_share=0.5)
        admitted.append(verdict.admitted)
        state = verdict.state
    assert admitted == [True, True, False]
    refused = evaluate(p, 1000, state, T0 + 2, new_state_share=0.5)
    assert refused.windows[0].remaining == 0
    # Room comes back when the window + margin has passed since the state began (T0 + 11 s) ...
    assert refused.retry_after == 11
    assert not evaluate(p, 1000, state, T0 + 10_999, new_state_share=0.5).admitted
    grown = evaluate(p, 1000, state, T0 + 11_000, new_state_share=0.5)
    assert grown.admitted and grown.windows[0].remaining == 2  # T0 has left; T0 + 1 ms and this call count
    # ... and an old state (since 0) or a share of 1 admits the whole limit at once.
    assert run("4/10", [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]) == [True, True, True, True, False]
    full = LogState((T0, T0 + 1, T0 + 2), since_ms=T0)
    assert evaluate(p, 0, full, T0 + 3, new_state_share=1.0).admitted
    assert not evaluate(p, 0, full, T0 + 3, new_state_share=0.5).admitted


def test_new_state_share_frees_with_the_oldest_call_before_the_window_ends() -> None:
    p = policy("4/10")
    state = LogState((T0, T0 + 6000), since_ms=T0)
    refused = evaluate(p, 0, state, T0 + 7000, new_state_share=0.5)
    assert not refused.admitted and refused.retry_after == 3  # both in window until T0 + 10 s
    assert evaluate(p, 0, state, T0 + 10_000, new_state_share=0.5).admitted
    # A share never rounds down to nothing.
    assert evaluate(policy("1/10"), 0, LogState(since_ms=T0), T0, new_state_share=0.1).admitted
