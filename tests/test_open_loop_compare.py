"""scripts/open_loop_compare.py: two runs of the injected-footage check compared event by event."""
import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def compare(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import open_loop_compare
    return open_loop_compare


def report(shares: dict[tuple[str, str, int], float | None]) -> dict:
    """An ``open_loop_inject.py --json`` report: one dev clip, an event per (action, kind, onset)."""
    rows = [{"action": action, "kind": kind, "onset": onset, "total": share, "micro layer, planted events": share}
            for (action, kind, onset), share in shares.items()]
    return {"summary": {}, "clips": {"dev": {"clip.mp4": {"events": rows}}}}


def test_events_are_paired_and_the_median_difference_is_theirs(compare):
    before = compare.event_shares(report({("smile", "micro", 10): 0.5, ("smile", "micro", 40): 0.6,
                                          ("frown", "micro", 70): None, ("frown", "macro", 90): 0.8,
                                          ("blink", "micro", 99): 0.1}))
    after = compare.event_shares(report({("smile", "micro", 10): 0.7, ("smile", "micro", 40): 0.9,
                                         ("frown", "micro", 70): 0.3, ("frown", "macro", 90): 0.4}))
    micro = compare.paired_differences(before, after, "micro", "total")
    np.testing.assert_allclose(np.sort(micro), [0.2, 0.3])  # the event without a share and the unpaired one left out
    np.testing.assert_allclose(compare.paired_differences(before, after, "macro", "total"), [-0.4])


def test_the_interval_holds_the_median_and_narrows_with_more_events(compare):
    rng = np.random.default_rng(3)
    few, many = rng.normal(0.1, 0.2, 10), rng.normal(0.1, 0.2, 400)
    low_few, high_few = compare.bootstrap_interval(few)
    low_many, high_many = compare.bootstrap_interval(many)
    assert low_few <= np.median(few) <= high_few and low_many <= np.median(many) <= high_many
    assert high_many - low_many < 0.5 * (high_few - low_few)
    assert compare.bootstrap_interval(few) == (low_few, high_few)  # seeded: the same events, the same interval


def test_the_command_prints_the_table_or_says_why_not(compare, tmp_path, capsys):
    shares = {("smile", "micro", onset): 0.5 for onset in range(0, 100, 10)}
    before, after, other = tmp_path / "before.json", tmp_path / "after.json", tmp_path / "other.json"
    before.write_text(json.dumps(report(shares)))
    after.write_text(json.dumps(report({key: value + 0.25 for key, value in shares.items()})))
    other.write_text(json.dumps(report({("smile", "micro", 5): 0.5})))
    assert compare.main([str(before), str(after)]) == 0
    table = capsys.readouterr().out
    assert "| micro, take | 10 | +0.250 |" in table and "10 / 0" in table
    assert compare.main([str(before), str(other)]) == 1
    assert "no events in common" in capsys.readouterr().err
