"""Whether an L1 entry may be served: a pure decision on its versions, age and Redis state."""
from __future__ import annotations

import enum
from typing import Mapping

from chalicelib.cache.entry import Versions


class L1Verdict(enum.Enum):
    """What the orchestrator may do with an L1 entry."""

    SERVE = "serve"                      # every version known to this container and current
    SERVE_UNTRACKED = "serve_untracked"  # some version unknown, Redis down, young enough
    ASK_L2 = "ask_l2"                    # cannot tell here: L2 must confirm the versions
    REJECT = "reject"                    # a version changed, or too old to trust untracked


def l1_verdict(versions: Versions, known: Mapping[str, str], age_s: float, redis_available: bool,
               critical: bool, max_age_s: float, max_age_untracked_s: float) -> L1Verdict:
    """The verdict for an entry built under `versions`, stored `age_s` ago, given the
    versions this container `known`s to be current. Ages count from when this container
    stored (and so last verified) the entry."""
    unknown = False
    for name, value in versions:
        current = known.get(name)
        if current is None:
            unknown = True
        elif current != value:
            return L1Verdict.REJECT
    if age_s > max_age_s:
        return L1Verdict.ASK_L2
    if not unknown:
        return L1Verdict.SERVE
    if redis_available:
        return L1Verdict.ASK_L2
    if critical and age_s > max_age_untracked_s:
        return L1Verdict.REJECT
    return L1Verdict.SERVE_UNTRACKED
