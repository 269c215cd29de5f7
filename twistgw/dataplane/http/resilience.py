"""A rule's timeouts and retries at request time (GEP-1742, GEP-1731).

``Policy`` is compiled once per route; a request on a route with one gets a ``Guard``:
its timers (on the reactor's clock, never blocking), its count of attempts and the
copy of its body kept for replay. Routes without timeouts or retries have no policy,
and their requests pay one attribute test."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twistgw.routing import ir

#: Request body bytes kept to replay on a retry; a longer body is not retried.
MAX_REPLAY_BODY = 64 * 1024
#: The backoff doubles after each retry, up to this many times the rule's backoff.
MAX_BACKOFF_FACTOR = 8


class Policy:
    """A rule's timeouts (seconds; None: none, "0s" included) and retries (``retries``:
    how many after the first try, 0 without a retry policy)."""

    __slots__ = ("request", "backend", "retries", "codes", "backoff")

    def __init__(self, timeouts: ir.Timeouts | None, retry: ir.Retry | None) -> None:
        self.request = (timeouts.request or None) if timeouts is not None else None
        self.backend = (timeouts.backend_request or None) if timeouts is not None else None
        self.retries = retry.attempts if retry is not None else 0
        self.codes = frozenset(retry.codes) if retry is not None else frozenset()
        self.backoff = retry.backoff if retry is not None else 0.0


def compile_policy(route: ir.Route) -> Policy | None:
    """The route's policy; None when it has no timeout and no retry to apply."""
    policy = Policy(route.timeouts, route.retry)
    if policy.request is None and policy.backend is None and not policy.retries:
        return None
    return policy


class BodyProducer:
    """The client's side as the producer of a retryable request's body towards one
    attempt's backend connection. A backend connection that dies stops its producer,
    which for the client's own transport would close the client (or stall its
    stream): this one lets the client's body flow on instead, for the next attempt."""

    __slots__ = ("conn",)

    def __init__(self, conn) -> None:
        self.conn = conn

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        if self.conn.transport is not None:  # (the client may be gone already)
            self.conn.transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        conn = self.conn
        if not conn.paused and conn.transport is not None:
            conn.transport.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802
        self.resumeProducing()


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


class Guard:
    """One request's timers, attempts and replayable body (``replay`` None: the body
    outgrew ``MAX_REPLAY_BODY``, so the request is not retried)."""

    __slots__ = (
        "policy",
        "clock",
        "attempts",
        "replay",
        "replay_size",
        "where",
        "_request",
        "_try",
    )

    def __init__(
        self, policy: Policy, clock: IReactorTime, request_expired: Callable[[], None]
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.attempts = 0
        self.replay: list[bytes] | None = [] if policy.retries else None
        self.replay_size = 0
        self.where: tuple[str, str, str] = ("/", "", "")  # path, query, authority
        self._request = clock.callLater(policy.request, request_expired) if policy.request else None
        self._try: IDelayedCall | None = None  # the attempt's timeout, or the backoff

    def attempt(self, backend_expired: Callable[[], None]) -> None:
        """A try at a backend starts: count it and start its backendRequest timeout."""
        self.attempts += 1
        _cancel(self._try)
        backend = self.policy.backend
        self._try = self.clock.callLater(backend, backend_expired) if backend else None

    def attempt_ended(self) -> None:
        """The attempt's response has come whole: its backendRequest timeout is over."""
        _cancel(self._try)
        self._try = None

    def keep(self, data: bytes) -> None:
        """Keep request body ``data`` for a replay, while the body stays small."""
        replay = self.replay
        if replay is not None:
            self.replay_size += len(data)
            if self.replay_size > MAX_REPLAY_BODY:
                self.replay = None
            else:
                replay.append(data)

    def may_retry(self) -> bool:
        """Whether another attempt is allowed (retries left, body replayable)."""
        return self.replay is not None and self.attempts <= self.policy.retries

    def retry_on(self, status: int) -> bool:
        """Whether a response with ``status`` is to be retried."""
        return status in self.policy.codes and self.may_retry()

    def backoff(self, retry: Callable[[], None]) -> float:
        """Call ``retry`` after the backoff (doubling per retry, capped); the delay."""
        base = self.policy.backoff
        delay = min(base * 2 ** (self.attempts - 1), base * MAX_BACKOFF_FACTOR)
        _cancel(self._try)
        self._try = self.clock.callLater(delay, retry)
        return delay

    def cancel(self) -> None:
        """Stop every timer (the exchange finished)."""
        _cancel(self._request)
        _cancel(self._try)
        self._request = self._try = None
