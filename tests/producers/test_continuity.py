from __future__ import annotations

from producers.continuity import ContinuityTracker, Gap


def test_contiguous_ids_pass_duplicates_drop_gaps_report() -> None:
    t = ContinuityTracker()
    assert t.observe("BTC", 10) == (True, None)
    assert t.observe("BTC", 11) == (True, None)
    assert t.observe("ETH", 500) == (True, None)
    assert t.observe("BTC", 11) == (False, None)
    assert t.observe("BTC", 9) == (False, None)
    accepted, gap = t.observe("BTC", 15)
    assert accepted and gap == Gap("BTC", 12, 14) and gap.missing == 3
    assert t.observe("BTC", 13) == (False, None)  # already declared missing; not re-opened
    assert t.duplicates == 3 and t.gaps == [Gap("BTC", 12, 14)]
