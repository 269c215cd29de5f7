"""Costly admin answers (/metrics, /dashboard.json): prepared on the reactor, computed
in a thread one at a time, shared by the requests that wait and reused while fresh."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from twistgw.admin.shared import MAX_WAITING, Busy, SharedAnswer


class Threads:
    """Work handed to "a thread", run when the test says."""

    def __init__(self) -> None:
        self.queued: list[tuple] = []

    def __call__(self, work) -> Deferred:
        done: Deferred = Deferred()
        self.queued.append((work, done))
        return done

    def run(self) -> None:
        work, done = self.queued.pop(0)
        try:
            done.callback(work())
        except Exception as exc:  # noqa: BLE001 - handed on as the thread pool would
            done.errback(exc)


def test_requests_share_one_computation_and_its_result_while_fresh() -> None:
    clock, threads, prepared = Clock(), Threads(), []

    def prepare():
        prepared.append(clock.seconds())  # (on the reactor: state taken now)
        return lambda: b"body %d" % len(prepared)

    shared = SharedAnswer(prepare, clock, fresh=1.0, in_thread=threads)
    got: list[bytes] = []
    for _ in range(3):
        shared.get().addCallback(got.append)
    assert len(threads.queued) == 1 and got == []  # one computation for three requests
    threads.run()
    assert got == [b"body 1"] * 3
    clock.advance(0.5)
    shared.get().addCallback(got.append)  # fresh: no computation
    assert got[-1] == b"body 1" and not threads.queued
    clock.advance(0.6)
    shared.get().addCallback(got.append)
    assert len(threads.queued) == 1  # stale: computed again
    threads.run()
    assert got[-1] == b"body 2" and prepared == [0.0, 1.1]


def test_a_failed_computation_fails_its_requests_and_is_not_kept() -> None:
    clock, threads = Clock(), Threads()
    outcomes = iter([ValueError("broken"), b"ok"])

    def work() -> bytes:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = SharedAnswer(lambda: work, clock, fresh=10.0, in_thread=threads)
    failures: list = []
    shared.get().addErrback(failures.append)
    shared.get().addErrback(failures.append)
    threads.run()
    assert [f.value.args for f in failures] == [("broken",), ("broken",)]
    got: list[bytes] = []
    shared.get().addCallback(got.append)
    threads.run()
    assert got == [b"ok"]


def test_a_failed_preparation_does_not_wedge_later_requests() -> None:
    clock, threads = Clock(), Threads()
    preparations = iter([RuntimeError("no table yet"), lambda: b"ok"])

    def prepare():
        outcome = next(preparations)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = SharedAnswer(prepare, clock, fresh=0.0, in_thread=threads)
    failures: list = []
    shared.get().addErrback(failures.append)
    assert failures[0].value.args == ("no table yet",) and not threads.queued
    got: list[bytes] = []
    shared.get().addCallback(got.append)
    threads.run()
    assert got == [b"ok"]


def test_waiting_requests_are_bounded() -> None:
    clock, threads = Clock(), Threads()
    shared = SharedAnswer(lambda: lambda: b"body", clock, fresh=0.0, in_thread=threads)
    got: list[bytes] = []
    refused: list = []
    for _ in range(MAX_WAITING + 3):
        shared.get().addCallbacks(got.append, refused.append)
    assert len(refused) == 3 and all(f.check(Busy) for f in refused)
    threads.run()
    assert got == [b"body"] * MAX_WAITING
