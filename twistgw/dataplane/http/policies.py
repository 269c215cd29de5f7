"""A route's TrafficPolicy and SecurityPolicy sections at request time: who may pass
(IP access lists, rate limit, Basic and JWT authentication) and how the response is
encoded.

Checks run in this order, each answering the request itself when it fails: the IP
access list (403), the rate limit (429), Basic authentication (401), JWT (401). The
CORS preflight is answered between the first two, so a browser's preflight needs no
credentials and uses no quota. A check that needs time (a bcrypt hash, a key set being
fetched) lets the request go on when it is done."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistgw.dataplane.http.basicauth import CompiledBasicAuth, Verifier, credentials
from twistgw.dataplane.http.clientaddr import Address, Networks, client_address
from twistgw.dataplane.http.compression import CompiledCompression
from twistgw.dataplane.http.extauth import AuthClient, CompiledExtAuth, Denied
from twistgw.dataplane.http.health import EndpointHealth
from twistgw.dataplane.http.jwtauth import CompiledJWT, KeySets, bearer
from twistgw.dataplane.http.pyfilters import CompiledPythonFilters, FilterRegistry
from twistgw.dataplane.ratelimit import Decision, SharedBuckets
from twistgw.dataplane.redisbuckets import RedisBuckets
from twistgw.routing import ir

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange
    from twistgw.metrics import Metrics

log = Logger()
#: Seconds a request may wait for its policies' checks (a key set being fetched, an
#: auth service, bcrypt behind others) before it is answered 503.
CHECK_TIMEOUT = 15.0
Fields = list[tuple[bytes, bytes]]
#: A check of a request: True to go on, False having answered it, or a Deferred of either.
Check = Callable[["Exchange"], "bool | Deferred"]


class Guards:
    """What the policies of every route of a worker share: the proxies whose
    X-Forwarded-For is believed, the rate-limit buckets (this gateway's shared memory,
    or Redis for every replica), the password checker, key sets, the auth client."""

    def __init__(
        self,
        reactor,
        metrics: Metrics,
        trusted_proxies: Networks | None = None,
        buckets: SharedBuckets | RedisBuckets | None = None,
        verifier: Verifier | None = None,
        fail_open: bool = True,
        filters: FilterRegistry | None = None,
    ) -> None:
        self.metrics = metrics
        self.key_sets = KeySets(reactor)
        self.auth_client = AuthClient(reactor)
        self.health = EndpointHealth(reactor, metrics)
        self.filters = filters if filters is not None else FilterRegistry({}, metrics)
        self.trusted = trusted_proxies if trusted_proxies is not None else Networks(())
        self.buckets = buckets if buckets is not None else SharedBuckets(slots=1024)
        self.verifier = verifier if verifier is not None else Verifier(reactor)
        #: a shared store (Redis) that cannot answer lets requests through (else 503)
        self.fail_open = fail_open


class CompiledIPAccess:
    __slots__ = ("policy", "allow", "deny")

    def __init__(self, spec: ir.IPAccess) -> None:
        self.policy = spec.policy
        self.allow = Networks(spec.allow)
        self.deny = Networks(spec.deny)

    def permits(self, address: Address | None) -> bool:
        if address is None:
            return False
        if address in self.deny:
            return False
        return not self.allow or address in self.allow


class CompiledRateLimit:
    __slots__ = ("policy", "bucket", "interval", "burst", "limit", "key", "header")

    def __init__(self, spec: ir.RateLimit) -> None:
        self.policy = spec.policy
        self.bucket = spec.bucket.encode() + b"\0"
        self.interval = spec.period / spec.requests
        self.burst = spec.burst
        self.limit = b"%d" % spec.burst
        self.key = spec.key
        self.header = spec.header.encode() if spec.header else None

    def key_of(self, exchange: Exchange, address: Address | None) -> bytes:
        if self.key == "ClientIP":
            if address is None:
                return self.bucket
            # an IPv6 client is its /64: one host holds a whole /64 to draw from
            return self.bucket + (address.packed if address.version == 4 else address.packed[:8])
        if self.key == "Header":
            for name, value in exchange.request.headers:
                if name == self.header:
                    return self.bucket + value
        return self.bucket


class CompiledPolicies:
    """An ``ir.Policies``, compiled once per table update."""

    __slots__ = (
        "refused",
        "ip_access",
        "rate_limit",
        "basic_auth",
        "jwt",
        "ext_auth",
        "compression",
        "health",
        "checks",
    )

    def __init__(self, spec: ir.Policies, python: tuple[ir.PythonFilter, ...] = ()) -> None:
        self.refused = spec.refused
        self.ip_access = CompiledIPAccess(spec.ip_access) if spec.ip_access else None
        self.rate_limit = CompiledRateLimit(spec.rate_limit) if spec.rate_limit else None
        self.basic_auth = CompiledBasicAuth(spec.basic_auth) if spec.basic_auth else None
        self.jwt = CompiledJWT(spec.jwt) if spec.jwt else None
        self.ext_auth = CompiledExtAuth(spec.ext_auth) if spec.ext_auth else None
        self.compression = CompiledCompression(spec.compression) if spec.compression else None
        self.health = spec.health_check  # (the worker's EndpointHealth keeps the state)
        #: the checks ``admit`` runs, in order: each answers True (go on), False (it
        #: answered the request) or a Deferred of either
        self.checks: list[Check] = []
        if self.rate_limit is not None:
            self.checks.append(self._within)
        if self.basic_auth is not None and self.jwt is not None:
            self.checks.append(self._basic_or_jwt)  # (one Authorization field: either)
        elif self.basic_auth is not None:
            self.checks.append(self._basic)
        elif self.jwt is not None:
            self.checks.append(self._jwt)
        if self.ext_auth is not None:
            self.checks.append(self._ext)
        if python:  # the rule's ExtensionRef filters (plugins): after the policies' checks
            self.checks += CompiledPythonFilters(python).request_checks()

    def screen(self, exchange: Exchange) -> bool:
        """Check the request before its CORS preflight; whether it may go on (if not,
        it has been answered)."""
        if self.refused is not None:
            log.warn("{route}: {why}", route=exchange.route.name, why=self.refused)
            exchange.respond_local(500, b"the route's security policy cannot be used\n")
            return False
        access = self.ip_access
        if access is not None and not access.permits(self._address(exchange)):
            _denied(exchange, access.policy, "ip_access")
            exchange.respond_local(403, b"your address may not use this route\n")
            return False
        return True

    def admit(self, exchange: Exchange) -> bool:
        """Check the rate limit, credentials and the rule's filters; whether the
        request may go on now (if not, it has been answered, or a check finishes later
        and the request goes on by ``exchange.resume``)."""
        return run_checks(exchange, self.checks, exchange.resume)

    def _basic(self, exchange: Exchange) -> bool | Deferred:
        auth = self.basic_auth
        given = credentials(exchange.request.headers)
        hashed = auth.users.get(given[0]) if given is not None else None
        if hashed is None:
            return self._unauthorized(exchange, auth)
        checked = exchange.conn.factory.guards.verifier.check(hashed, given[1], given[0])
        if checked is None:
            _denied(exchange, auth.policy, "auth_busy")
            exchange.respond_local(503, b"too many logins being checked: retry\n")
            return False
        if isinstance(checked, bool):
            return self._basic_passed(exchange) if checked else self._unauthorized(exchange, auth)
        return checked.addCallback(self._basic_checked, exchange, auth)

    def _basic_checked(self, matched: bool, exchange: Exchange, auth: CompiledBasicAuth) -> bool:
        if exchange.finished:
            return False  # (answered meanwhile: the deadline, or the client left)
        return self._basic_passed(exchange) if matched else self._unauthorized(exchange, auth)

    def _basic_passed(self, exchange: Exchange) -> bool:
        """A request in with Basic credentials: on a rule JWT reaches too, without the
        client's own copies of the fields claims fill (a Basic user is no token's
        subject)."""
        if self.jwt is not None and self.jwt.fields:
            fields = self.jwt.fields
            exchange.request.headers = [f for f in exchange.request.headers if f[0] not in fields]
        return True

    def _basic_or_jwt(self, exchange: Exchange) -> bool | Deferred:
        """Basic credentials or a bearer token, whichever the request carries."""
        if bearer(exchange.request.headers) is not None:
            return self._jwt(exchange)
        return self._basic(exchange)

    def _jwt(self, exchange: Exchange) -> bool | Deferred:
        auth = self.jwt
        token = bearer(exchange.request.headers)
        if token is None:
            return self._no_token(exchange, auth, b"")
        now = exchange.conn.clock.seconds()
        known = auth.recall(token, now)
        if known is not None:
            exchange.request.headers = auth.with_claims(exchange.request.headers, *known)
            return True
        if auth.was_refused(token, now):
            return self._no_token(exchange, auth, b', error="invalid_token"')
        return self._verify(exchange, auth, token, auth.candidates(token), now)

    def _verify(
        self,
        exchange: Exchange,
        auth: CompiledJWT,
        token: bytes,
        providers: list,
        now: float,
        checked_all: bool = True,
    ) -> bool | Deferred:
        """Try ``providers`` in turn; a provider whose keys are still being fetched is
        tried once they are. ``checked_all``: no provider so far lacked its keys (a
        token refused for want of a key set is not remembered as refused)."""
        key_sets = exchange.conn.factory.guards.key_sets
        for index, provider in enumerate(providers):
            keys = provider.keys or key_sets.get(provider.spec.jwks_uri)
            if isinstance(keys, Deferred):
                rest = providers[index:]
                return keys.addCallback(
                    self._keys_came, exchange, auth, token, rest, now, checked_all
                )
            if keys is None:
                checked_all = False  # (its key set could not be fetched: it may be later)
                continue
            claims = provider.verify(token, keys, now)
            if claims is not None:
                auth.remember(token, provider, claims, now)
                exchange.request.headers = auth.with_claims(
                    exchange.request.headers, provider, claims
                )
                return True
        if checked_all:
            auth.refuse(token, now)
        return self._no_token(exchange, auth, b', error="invalid_token"')

    def _ext(self, exchange: Exchange) -> bool | Deferred:
        ext = self.ext_auth
        spec = ext.spec
        made = ext.request_for(exchange)
        asked = None
        if made is not None:
            asked = exchange.conn.factory.guards.auth_client.ask(*made, spec.timeout)
        if asked is None:
            return self._unanswered(exchange, ext, "no endpoint" if made is None else "busy")

        def allowed(answer: Fields) -> bool:
            exchange.request.headers = ext.with_answer(exchange.request.headers, answer)
            return True

        def refused(failure) -> bool:
            if exchange.finished:
                return False
            if failure.check(Denied):
                denial = failure.value
                _denied(exchange, spec.policy, "ext_auth")
                exchange.respond_local(denial.status, denial.body, denial.headers)
                return False
            return self._unanswered(exchange, ext, failure.getErrorMessage())

        return asked.addCallbacks(allowed, refused)

    @staticmethod
    def _unanswered(exchange: Exchange, ext: CompiledExtAuth, why: str) -> bool:
        spec = ext.spec
        log.warn(
            "{policy}: auth service {backend} did not answer ({why}){open}",
            policy=spec.policy,
            backend=spec.backend.name,
            why=why,
            open="; failing open" if spec.fail_open else "",
        )
        if spec.fail_open:  # (in without the service's word: no client copies of its fields)
            exchange.request.headers = ext.with_answer(exchange.request.headers, [])
            return True
        _denied(exchange, spec.policy, "ext_auth_unavailable")
        exchange.respond_local(503, b"the authorization service did not answer\n")
        return False

    def _keys_came(
        self,
        _,
        exchange: Exchange,
        auth: CompiledJWT,
        token: bytes,
        rest: list,
        now: float,
        checked_all: bool,
    ) -> bool | Deferred:
        if exchange.finished:
            return False
        return self._verify(exchange, auth, token, rest, now, checked_all)

    @staticmethod
    def _no_token(exchange: Exchange, auth: CompiledJWT, error: bytes) -> bool:
        _denied(exchange, auth.policy, "jwt")
        challenge = [(b"www-authenticate", b'Bearer realm="%s"%s' % (auth.policy.encode(), error))]
        exchange.respond_local(401, b"a valid bearer token is required\n", challenge)
        return False

    @staticmethod
    def _unauthorized(exchange: Exchange, auth: CompiledBasicAuth) -> bool:
        _denied(exchange, auth.policy, "basic_auth")
        exchange.respond_local(401, b"authentication required\n", list(auth.challenge))
        return False

    @staticmethod
    def _address(exchange: Exchange) -> Address | None:
        conn = exchange.conn
        return client_address(conn.peer_host, exchange.request.headers, conn.factory.guards.trusted)

    def _within(self, exchange: Exchange) -> bool | Deferred:
        limit = self.rate_limit
        key = limit.key_of(exchange, self._address(exchange) if limit.key == "ClientIP" else None)
        conn = exchange.conn
        guards = conn.factory.guards
        decision = guards.buckets.take(key, limit.interval, limit.burst, conn.clock.seconds())
        if isinstance(decision, Decision):
            return self._decided(exchange, decision)
        return decision.addCallback(self._stored, exchange)  # (a shared store: Redis)

    def _stored(self, decision: Decision | None, exchange: Exchange) -> bool:
        """A shared store's decision; None: it could not answer (``fail_open`` says)."""
        if exchange.finished:
            return False
        if decision is not None:
            return self._decided(exchange, decision)
        guards = exchange.conn.factory.guards
        exchange.conn.metrics.rate_limit_store_failed("allowed" if guards.fail_open else "refused")
        if guards.fail_open:
            return True
        _denied(exchange, self.rate_limit.policy, "rate_limit_unavailable")
        exchange.respond_local(503, b"the rate limit cannot be checked now\n")
        return False

    def _decided(self, exchange: Exchange, decision: Decision) -> bool:
        limit = self.rate_limit
        fields = [
            (b"ratelimit-limit", limit.limit),
            (b"ratelimit-remaining", b"%d" % decision.remaining),
            (b"ratelimit-reset", b"%d" % math.ceil(decision.reset)),
        ]
        if decision.allowed:
            exchange.added = [*exchange.added, *fields] if exchange.added else fields
            return True
        fields.append((b"retry-after", b"%d" % math.ceil(decision.retry_after)))
        _denied(exchange, limit.policy, "rate_limit")
        exchange.respond_local(429, b"too many requests: slow down\n", fields)
        return False


def run_checks(
    exchange: Exchange, checks: list[Check], then: Callable[[], None], step: int = 0, timer=None
) -> bool:
    """Run ``checks`` from ``step`` on: whether the request may go on now (if not, it
    has been answered, or a check finishes later and ``then`` is called once the rest
    have passed). ``timer``: the deadline of the checks that went on later, started
    with the first of them (``CHECK_TIMEOUT`` in all)."""
    while step < len(checks):
        outcome = checks[step](exchange)
        step += 1
        if outcome is True:
            continue
        if outcome is False:
            _stop(None, timer)
            return False
        if timer is None:
            timer = exchange.conn.clock.callLater(CHECK_TIMEOUT, _too_long, exchange)
        outcome.addCallbacks(
            partial(_checked_later, exchange, checks, then, step, timer),
            partial(_check_failed, exchange, timer),
        )
        return False
    _stop(None, timer)
    return True


def _too_long(exchange: Exchange) -> None:
    if exchange.body_wait is not None:  # (a filter waits for the client's body)
        exchange.respond_local(408, b"the request body did not come in time\n")
        return
    exchange.respond_local(503, b"the route's policy checks took too long\n")


def _checked_later(
    exchange: Exchange, checks: list[Check], then: Callable[[], None], step: int, timer, passed
) -> None:
    if exchange.finished:
        _stop(None, timer)
        return  # (the client went away, or the deadline answered, meanwhile)
    if not passed:
        _stop(None, timer)
    elif run_checks(exchange, checks, then, step, timer):
        then()


def _check_failed(exchange: Exchange, timer, failure) -> None:
    _stop(None, timer)
    log.failure("a policy check failed", failure)
    exchange.respond_local(500, b"the route's policy check failed\n")


def _stop(result, timer):
    """Pass ``result`` on, ``timer`` (if any) stopped."""
    if timer is not None and timer.active():
        timer.cancel()
    return result


def _denied(exchange: Exchange, policy: str, reason: str) -> None:
    exchange.conn.metrics.policy_denied(policy, reason)
