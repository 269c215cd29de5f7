"""Timeouts and retries without sockets: durations, the compiled policy, and a
request's guard on ``task.Clock`` (attempts, backoff, replay bound, timers)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twistgw.api.validation import InvalidObject, parse_duration, validated_body
from twistgw.dataplane.http.resilience import MAX_REPLAY_BODY, Guard, Policy, compile_policy
from twistgw.routing import ir


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("500ms", 0.5), ("1h30m", 5400.0), ("1m1s1ms", 61.001), ("99999h", 359996400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1.5s", "1d", "", "100000s", "1s1s1s1s1s", "-1s", "1 s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _route(**rule) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"rules": [rule]},
    }


def test_zero_request_timeout_allows_any_backend_timeout() -> None:
    validated_body(_route(timeouts={"request": "0s", "backendRequest": "1h"}))
    validated_body(_route(timeouts={"request": "2s", "backendRequest": "2000ms"}))
    with pytest.raises(InvalidObject, match="cannot be longer"):
        validated_body(_route(timeouts={"request": "2s", "backendRequest": "2001ms"}))


@pytest.mark.parametrize(
    "retry", [{"codes": [399]}, {"codes": [True]}, {"codes": "503"}, {"backoff": "1x"}]
)
def test_invalid_retries(retry: dict) -> None:
    with pytest.raises(InvalidObject, match="spec.rules\\[0\\].retry"):
        validated_body(_route(retry=retry))


def _match() -> ir.Match:
    return ir.Match()


def test_no_policy_without_timeouts_or_retry() -> None:
    assert compile_policy(ir.Route("ns/r", 0, _match())) is None
    disabled = ir.Route("ns/r", 0, _match(), timeouts=ir.Timeouts(request=0.0))
    assert compile_policy(disabled) is None  # "0s": no timer at all
    policy = compile_policy(ir.Route("ns/r", 0, _match(), retry=ir.Retry(attempts=1)))
    assert policy is not None and policy.retries == 1 and policy.request is None


def _guard(clock: Clock, fired: list[str], **retry) -> Guard:
    policy = Policy(ir.Timeouts(request=1.0, backend_request=0.3), ir.Retry(**retry))
    return Guard(policy, clock, lambda: fired.append("request"))


def test_attempts_and_backoff_on_the_clock() -> None:
    clock, fired = Clock(), []
    guard = _guard(clock, fired, attempts=2, codes=(503,), backoff=0.1)
    guard.attempt(lambda: fired.append("backend"))
    assert guard.retry_on(503) and not guard.retry_on(500)
    clock.advance(0.3)
    assert fired == ["backend"]
    assert guard.backoff(lambda: fired.append("retry")) == pytest.approx(0.1)
    clock.advance(0.1)
    assert fired == ["backend", "retry"]
    guard.attempt(lambda: fired.append("backend"))
    assert guard.backoff(lambda: fired.append("retry")) == pytest.approx(0.2)  # doubled
    clock.advance(0.2)
    guard.attempt(lambda: fired.append("backend"))
    assert guard.attempts == 3 and not guard.may_retry()  # two retries spent
    clock.advance(0.15)
    assert fired == ["backend", "retry", "retry"]  # t=0.75: the third attempt's timer
    clock.advance(0.15)
    assert fired[-1] == "backend"  # t=0.9
    clock.advance(0.1)
    assert fired[-1] == "request"  # t=1.0: the request timeout, from the start
    guard.cancel()
    assert not clock.getDelayedCalls()


def test_backoff_is_capped() -> None:
    clock, fired = Clock(), []
    guard = _guard(clock, fired, attempts=20, backoff=0.01)
    for _ in range(10):
        guard.attempt(lambda: None)
    assert guard.backoff(lambda: None) == pytest.approx(0.08)


def test_a_large_body_is_not_replayable() -> None:
    clock, fired = Clock(), []
    guard = _guard(clock, fired, attempts=2)
    guard.attempt(lambda: None)
    guard.keep(b"x" * MAX_REPLAY_BODY)
    assert guard.may_retry() and guard.replay_size == MAX_REPLAY_BODY
    guard.keep(b"y")
    assert guard.replay is None and not guard.may_retry()
    guard.cancel()


def test_cancel_stops_every_timer() -> None:
    clock, fired = Clock(), []
    guard = _guard(clock, fired, attempts=2)
    guard.attempt(lambda: fired.append("backend"))
    guard.cancel()
    clock.advance(5)
    assert fired == [] and not clock.getDelayedCalls()
