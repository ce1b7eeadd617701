"""The coherence owner (chalicelib.cache.coherence): its transitions, its invariants, and
the interleaving of a drain with a reader that learns versions from L2, forced with events."""
from __future__ import annotations

import threading
from typing import Callable

from chalicelib.cache.coherence import Coherence
from chalicelib.cache.stats import CacheStats
from chalicelib.cache.tracking import DrainResult

WAIT_S = 10.0


class ScriptedTracker:
    """The tracking connection's interface with scripted answers (no socket)."""

    def __init__(self) -> None:
        self.healthy = True
        self.queued: list[DrainResult] = []
        self.on_drain: Callable[[], None] = lambda: None

    def quiet(self) -> bool:
        return not self.queued

    def drain(self) -> DrainResult:
        self.on_drain()
        return self.queued.pop(0) if self.queued else DrainResult([], False)


def _owner(after_learn_check: Callable[[], None] = lambda: None) -> tuple[Coherence, ScriptedTracker]:
    tracker = ScriptedTracker()
    return Coherence(tracker, CacheStats(), after_learn_check), tracker


def test_learn_then_push_forgets_and_moves_epoch_and_generation() -> None:
    co, tracker = _owner()
    co.learn(co.generation, (("v:a", "1"), ("v:b", "1")))
    assert co.known == {"v:a": "1", "v:b": "1"}
    epoch, generation = co.epoch, co.generation
    tracker.queued.append(DrainResult(["v:a"], False))
    co.begin_request()
    assert co.known == {"v:b": "1"}
    assert co.epoch > epoch and co.generation > generation
    assert co.stats.invalidations_received == 1


def test_reset_forgets_everything() -> None:
    co, tracker = _owner()
    co.learn(co.generation, (("v:a", "1"),))
    tracker.queued.append(DrainResult([], True))
    co.begin_request()
    assert co.known == {} and co.stats.l1_resets == 1


def test_quiet_drain_changes_nothing() -> None:
    co, _ = _owner()
    co.learn(co.generation, (("v:a", "1"),))
    epoch, generation = co.epoch, co.generation
    co.begin_request()
    assert (co.epoch, co.generation, co.known) == (epoch, generation, {"v:a": "1"})


def test_learn_refused_when_a_drain_was_applied_since_the_read() -> None:
    co, tracker = _owner()
    before_read = co.generation
    tracker.queued.append(DrainResult(["v:a"], False))
    co.begin_request()  # the push of a write arrived while the reader was asking L2
    co.learn(before_read, (("v:a", "old"),))
    assert "v:a" not in co.known


def test_learn_refused_while_tracking_is_broken() -> None:
    co, tracker = _owner()
    tracker.healthy = False
    co.learn(co.generation, (("v:a", "1"),))
    assert co.known == {}


def test_learning_a_changed_value_moves_the_epoch() -> None:
    co, _ = _owner()
    co.learn(co.generation, (("v:a", "1"),))
    epoch = co.epoch
    co.learn(co.generation, (("v:a", "1"),))
    assert co.epoch == epoch  # nothing changed: L1 verdicts stay valid
    co.learn(co.generation, (("v:a", "2"),))
    assert co.epoch > epoch and co.known["v:a"] == "2"


def test_own_bump_is_known_at_once_and_refuses_older_readers() -> None:
    co, _ = _owner()
    before_read = co.generation
    co.bumped({"v:a": "new"})
    assert co.known == {"v:a": "new"}
    co.learn(before_read, (("v:a", "old"),))  # a reader that read before the write
    assert co.known == {"v:a": "new"}


def test_stamp_uses_known_values_or_empty() -> None:
    co, _ = _owner()
    co.bumped({"v:a": "1"})
    assert co.stamp(["v:a", "v:b"]) == (("v:a", "1"), ("v:b", ""))


def test_no_write_back_after_a_drain_removed_the_key() -> None:
    """The reader has passed its generation check and is about to write `v:a = old`; a drain
    with the push for `v:a` starts right then. The drain must wait for the reader's critical
    section and remove the value after it, so `old` is never left behind."""
    checked, release = threading.Event(), threading.Event()

    def pause_reader() -> None:
        checked.set()
        assert release.wait(WAIT_S)

    co, tracker = _owner(after_learn_check=pause_reader)
    tracker.queued.append(DrainResult(["v:a"], False))
    drain_started, drain_reading = threading.Event(), threading.Event()
    tracker.on_drain = drain_reading.set
    generation = co.generation

    reader = threading.Thread(target=co.learn, args=(generation, (("v:a", "old"),)))
    reader.start()
    assert checked.wait(WAIT_S)  # the reader is between its check and its write

    def drain() -> None:
        drain_started.set()
        co.begin_request()

    drainer = threading.Thread(target=drain)
    drainer.start()
    assert drain_started.wait(WAIT_S)
    assert not drain_reading.is_set()  # the drain cannot begin while the reader is inside
    release.set()
    reader.join(WAIT_S)
    drainer.join(WAIT_S)
    assert not reader.is_alive() and not drainer.is_alive()
    assert drain_reading.is_set()
    assert "v:a" not in co.known
    assert co.generation > generation


def test_no_learn_after_a_drain_that_ran_between_read_and_check() -> None:
    """The other order: the drain is applied after the reader read L2 but before its check."""
    co, tracker = _owner()
    read_done, drained = threading.Event(), threading.Event()
    generation = co.generation

    def reader() -> None:
        read_done.set()  # L2 answered `old`
        assert drained.wait(WAIT_S)
        co.learn(generation, (("v:a", "old"),))

    thread = threading.Thread(target=reader)
    thread.start()
    assert read_done.wait(WAIT_S)
    tracker.queued.append(DrainResult(["v:a"], False))
    co.begin_request()
    drained.set()
    thread.join(WAIT_S)
    assert "v:a" not in co.known


def test_drains_is_odd_exactly_while_a_drain_is_applied() -> None:
    co, tracker = _owner()
    seen: list[int] = []
    tracker.on_drain = lambda: seen.append(co.drains)
    tracker.queued.append(DrainResult(["v:a"], False))
    co.begin_request()
    assert seen and seen[0] % 2 == 1 and co.drains % 2 == 0


def test_fast_path_defers_to_a_drain_that_ran_during_its_check() -> None:
    """Another thread drains (and so empties the socket) while this request's lock-free check
    looks at the socket: the check must not be trusted; the request drains under the lock."""
    co, tracker = _owner()
    mine: list[bool] = []
    other_done = threading.Event()

    def other_request() -> None:
        tracker.queued.append(DrainResult(["v:a"], False))
        co.begin_request()
        other_done.set()

    def quiet_while_another_drains() -> bool:
        tracker.quiet = lambda: False  # the other request sees its push queued
        thread = threading.Thread(target=other_request)
        thread.start()
        assert other_done.wait(WAIT_S)
        thread.join(WAIT_S)
        tracker.on_drain = lambda: mine.append(True)
        return True

    tracker.quiet = quiet_while_another_drains  # type: ignore[method-assign]
    co.begin_request()
    assert mine == [True], "the request trusted a check that a concurrent drain invalidated"
