"""The L1 verdict table (chalicelib.cache.verdict)."""
from __future__ import annotations

import pytest

from chalicelib.cache.verdict import L1Verdict, l1_verdict

V = (("v:a", "1"), ("v:b", "2"))
MAX_AGE, UNTRACKED = 300.0, 2.0

# (known versions, age s, redis available, critical) -> verdict
TABLE = [
    ({"v:a": "1", "v:b": "2"}, 1.0, True, True, L1Verdict.SERVE),
    ({"v:a": "1", "v:b": "2"}, 1.0, False, True, L1Verdict.SERVE),
    ({"v:a": "1", "v:b": "X"}, 1.0, True, False, L1Verdict.REJECT),
    ({"v:a": "1", "v:b": "X"}, 999.0, False, False, L1Verdict.REJECT),  # a changed version wins over age
    ({"v:a": "1", "v:b": "2"}, 301.0, True, False, L1Verdict.ASK_L2),   # past the L1 max age
    ({"v:a": "1"}, 1.0, True, True, L1Verdict.ASK_L2),                  # unknown version, Redis up
    ({}, 1.0, False, False, L1Verdict.SERVE_UNTRACKED),                 # unknown, Redis down
    ({}, 1.0, False, True, L1Verdict.SERVE_UNTRACKED),                  # critical, young
    ({}, 3.0, False, True, L1Verdict.REJECT),                           # critical, past untracked age
    ({}, 3.0, False, False, L1Verdict.SERVE_UNTRACKED),                 # not critical: no bound
]


@pytest.mark.parametrize("known, age, redis_up, critical, expected", TABLE)
def test_verdict_table(known: dict, age: float, redis_up: bool, critical: bool, expected: L1Verdict) -> None:
    assert l1_verdict(V, known, age, redis_up, critical, MAX_AGE, UNTRACKED) is expected


def test_entry_without_versions_is_served() -> None:
    assert l1_verdict((), {}, 1.0, True, True, MAX_AGE, UNTRACKED) is L1Verdict.SERVE
