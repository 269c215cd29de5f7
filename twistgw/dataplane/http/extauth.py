"""External authorization over HTTP (a SecurityPolicy's ``extAuth``): the request's
head goes to an auth service first, and its answer decides.

The auth request has the client's method (HEAD as GET: the service's answer body may
be what the client gets), the path prefix then the client's target, no body, the
client's fields (those listed, or all but hop-by-hop and framing ones), Host as the
client sent it, and ``X-Forwarded-For``/``-Proto``/``-Method``/``-Uri``. A 2xx answer
lets the request through, with the fields listed in ``headersFromAuth`` set on it;
any other answer goes to the client as it is (its body up to ``MAX_DENIAL_BODY``).
The service not answering within the policy's timeout, or failing, is 503 (or the
request goes through, with ``failOpen``). At most ``MAX_IN_FLIGHT`` auth requests per
worker are open at once; past that, 503."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import treq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers as TwistedHeaders

from twistgw.dataplane.http.discard import DiscardBody
from twistgw.dataplane.http.h1.heads import CONNECTION_FIELDS
from twistgw.dataplane.http.messages import Headers
from twistgw.routing import ir

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange

#: Auth requests open at once per worker.
MAX_IN_FLIGHT = 1024
#: The most of a denial's body passed to the client.
MAX_DENIAL_BODY = 64 * 1024
#: Fields never sent to the auth service nor copied from its answer (hop-by-hop and
#: framing: the auth request has no body, and the client's answer is framed anew).
NOT_PASSED = CONNECTION_FIELDS


class Denied(Exception):
    """The auth service's answer for the client: status, fields, body."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


class AuthClient:
    """A worker's connections to auth services (kept alive, pooled per endpoint)."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 32
        pool.retryAutomatically = False
        self.agent = Agent(reactor, pool=pool, connectTimeout=5)
        self.in_flight = 0

    def ask(self, url: bytes, method: bytes, headers: Headers, timeout: float) -> Deferred | None:
        """The auth service's answer: a Deferred firing with the fields to set on the
        request (2xx) or failing with Denied (any other answer) or another error
        (unreachable, timed out); None when too many are open already."""
        if self.in_flight >= MAX_IN_FLIGHT:
            return None
        self.in_flight += 1
        fields = TwistedHeaders()
        for name, value in headers:
            fields.addRawHeader(name, value)
        asked = maybeDeferred(self.agent.request, method, url, fields)
        asked.addCallback(self._answered, timeout)
        asked.addTimeout(timeout, self.reactor)

        def done(result):
            self.in_flight -= 1
            return result

        return asked.addBoth(done)

    def _answered(self, response, timeout: float) -> Deferred | Headers:
        headers = [
            (name.lower(), value)
            for name, values in response.headers.getAllRawHeaders()
            for value in values
        ]
        if 200 <= response.code < 300:
            # (read and dropped, its connection reused: within the request's timeout)
            response.deliverBody(DiscardBody(self.reactor, timeout))
            return headers
        received: list[bytes] = []

        def collect(data: bytes) -> None:
            if sum(map(len, received)) < MAX_DENIAL_BODY:
                received.append(data)

        def deny(_) -> None:
            body = b"".join(received)[:MAX_DENIAL_BODY]
            passed = [(n, v) for n, v in headers if n not in NOT_PASSED]
            raise Denied(response.code, passed, body)

        return treq.collect(response, collect).addCallback(deny)


class CompiledExtAuth:
    """An extAuth section, ready to ask its service about requests."""

    __slots__ = ("spec", "endpoints", "path", "passed", "taken")

    def __init__(self, spec: ir.ExtAuth) -> None:
        self.spec = spec
        endpoints = spec.backend.endpoints
        self.endpoints = itertools.cycle(endpoints) if endpoints else None  # round robin
        self.path = spec.path.encode()
        self.passed = frozenset(name.encode() for name in spec.headers_to_backend)
        self.taken = frozenset(name.encode() for name in spec.headers_from_auth)

    def request_for(self, exchange: Exchange) -> tuple[bytes, bytes, Headers] | None:
        """The auth request's URL, method and fields; None when the service has no
        endpoint."""
        if self.endpoints is None:
            return None
        endpoint = next(self.endpoints)
        request = exchange.request
        host = endpoint.address
        if ":" in host:
            host = f"[{host}]"
        url = b"http://%s:%d%s%s" % (host.encode(), endpoint.port, self.path, request.target)
        passed = self.passed
        fields = [
            field
            for field in request.headers
            if field[0] not in NOT_PASSED
            and (not passed or field[0] in passed)
            and not field[0].startswith(b"x-forwarded-")
        ]
        conn = exchange.conn
        fields += [
            (b"host", request.authority),
            (b"x-forwarded-for", conn.peer_host),
            (b"x-forwarded-proto", conn.scheme_bytes),
            (b"x-forwarded-method", request.method),
            (b"x-forwarded-uri", request.target),
        ]
        method = b"GET" if request.method == b"HEAD" else request.method
        return url, method, fields

    def with_answer(self, headers: Headers, answer: Headers) -> Headers:
        """The request's fields with the auth answer's ``headersFromAuth`` set (and the
        client's own of those names dropped)."""
        taken = self.taken
        if not taken:
            return headers
        # a client's own fields of those names never pass, whatever the service said
        kept = [field for field in headers if field[0] not in taken]
        return kept + [field for field in answer if field[0] in taken]
