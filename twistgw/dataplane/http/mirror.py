"""RequestMirror: a fire-and-forget copy of a request to a mirror backend.

A ``Mirror`` takes the request as the main exchange sends it (head after the route's
filters, then the body as it arrives) to one endpoint of the mirror backend, and
reads the response only to throw it away. It never slows, fails or buffers the main
request beyond a small bound: while the mirror's connection is being made, or is
paused (a TLS handshake, a full send buffer, an HTTP/2 window), the copy holds up to
``MAX_MIRROR_PENDING`` body bytes (and all copies of a worker ``MAX_MIRRORS_HELD``)
and is dropped (and counted) past them; it is
dropped too when too many copies are in flight in the worker, there is no endpoint,
the pool is full, or anything fails. An answer is read only if it is small
(``MAX_MIRROR_ANSWER``) and within ``--backend-response-timeout`` as a whole, so the
connection can be reused; any other answer ends the copy at its head. The main
exchange never waits on, or hears from, a mirror.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twistgw.dataplane.http.deadline import Deadline
from twistgw.dataplane.http.messages import Headers, Response

if TYPE_CHECKING:
    from twistgw.dataplane.http.router import CompiledBackend
    from twistgw.dataplane.http.upstream import UpstreamConnection, UpstreamPool
    from twistgw.metrics import Metrics
    from twistgw.routing.ir import CertificateKey

log = Logger()

#: Body bytes a copy holds while its backend connection is being made or is paused
#: (as Envoy's shadow copies are bounded by its 1 MiB connection buffer); past it, or
#: past ``MAX_MIRRORS_HELD`` for all copies in the worker, the copy is dropped.
MAX_MIRROR_PENDING = 1024 * 1024
MAX_MIRRORS_HELD = 32 * 1024 * 1024
#: The largest mirror answer read to its end (to reuse the connection); a longer one,
#: or one of unknown length, ends the copy at its head.
MAX_MIRROR_ANSWER = 64 * 1024
#: Copies in flight per worker; a request finding this many gets none.
MAX_MIRRORS_IN_FLIGHT = 1024


class Mirror:
    """One copy of one request, on its way to ``backend``."""

    __slots__ = (
        "pool",
        "metrics",
        "route",
        "backend",
        "head",
        "pending",
        "pending_size",
        "request_done",
        "end_sent",
        "paused",
        "producing",
        "finished",
        "upstream",
        "answer_deadline",
    )

    #: Copies in flight in this process (the worker), and the body bytes they hold.
    in_flight = 0
    held = 0

    def __init__(
        self,
        pool: UpstreamPool,
        metrics: Metrics,
        route: str,
        backend: CompiledBackend,
        head: tuple[bytes, bytes, Headers, int | None],
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.route = route
        self.backend = backend
        self.head = head  # (method, target, headers, length)
        self.pending: deque[bytes] = deque()
        self.pending_size = 0
        self.request_done = False
        self.end_sent = False
        self.paused = False  # the backend connection cannot take more now
        self.producing = False  # registered as its transport's producer
        self.finished = False
        self.upstream: UpstreamConnection | None = None
        self.answer_deadline: Deadline | None = None

    def start(self, client_certificate: CertificateKey | None) -> None:
        """Ask the pool for a connection (or stream) to the backend, unless the copy
        must be dropped at once."""
        if Mirror.in_flight >= MAX_MIRRORS_IN_FLIGHT:
            self.finished = True
            self.metrics.mirrored(self.route, "in_flight_limit")
            return
        endpoint = self.backend.endpoint()
        if endpoint is None:
            self.finished = True
            self.metrics.mirrored(self.route, "no_endpoint")
            return
        Mirror.in_flight += 1
        tls = self.backend.spec.tls
        certificate = client_certificate if tls is not None else None
        try:
            self.pool.acquire(endpoint, self, tls, certificate, self.backend.http2)
        except Exception:  # a copy must never break the request it copies
            log.failure("mirroring to {backend} failed", backend=self.backend.name)
            self._drop("error")

    # -- the request, as the main exchange receives it

    def data(self, data: bytes) -> None:
        if self.finished:
            return
        if self.upstream is not None and not self.paused and not self.pending:
            self.upstream.codec.send_data(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        Mirror.held += len(data)
        if self.pending_size > MAX_MIRROR_PENDING or Mirror.held > MAX_MIRRORS_HELD:
            self._drop("backlog")

    def end(self) -> None:
        self.request_done = True
        if not self.finished and self.upstream is not None:
            self._send_pending()

    def cancel(self) -> None:
        """The client went away before its request was whole: the copy cannot be."""
        if not self.finished and not self.request_done:
            self._drop("client_gone")

    # -- the upstream side (the pool and the backend codec call these)

    def upstream_ready(self, upstream: UpstreamConnection) -> None:
        if self.finished:
            upstream.release()
            return
        self.upstream = upstream
        upstream.exchange = self
        method, target, headers, length = self.head
        upstream.codec.send_request(self, method, target, headers, length, None)
        if self.upstream is not None:  # (sending may have failed it)
            self.producing = True
            upstream.transport.registerProducer(self, True)
        if self.upstream is not None:
            self._send_pending()

    def _send_pending(self) -> None:
        """Send the body held while connecting or paused, and the end once it is all
        there and sent."""
        codec = self.upstream.codec
        pending = self.pending
        while pending and not self.paused and self.upstream is not None:
            data = pending.popleft()
            self.pending_size -= len(data)
            Mirror.held -= len(data)
            codec.send_data(data)
        if self.request_done and not pending and not self.end_sent and self.upstream is not None:
            self.end_sent = True
            codec.send_end()

    def upstream_failed(self, reason: str) -> None:
        self._drop("unavailable")

    def upstream_overflow(self, reason: str) -> None:
        self._drop("unavailable")

    def upstream_error(self, status: int, reason: str, started: bool) -> None:
        self._drop("error")

    def response_head(self, response: Response, upgrade: bytes | None) -> None:
        """The mirror's answer is ignored: a small one is read (and thrown away) to
        keep the connection, within the response timeout as a whole; the copy ends
        at any other's head."""
        length = response.length
        if length is None or length > MAX_MIRROR_ANSWER:
            upstream = self._detach()
            if upstream is not None:
                upstream.abort()
            self._finish("completed")
            return
        deadline = self.answer_deadline = Deadline(self.pool.reactor, self._answer_expired)
        deadline.set(self.pool.settings.backend_response_timeout)

    def _answer_expired(self) -> None:
        self._drop("error")

    def response_data(self, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def response_end(self, trailers: Headers | None = None) -> None:
        upstream = self._detach()
        if upstream is not None:
            upstream.release()
        self._finish("completed")

    # -- the backend connection as the copy's consumer

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        """The connection cannot take more now: hold the body (up to the bound)."""
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        if not self.finished and self.upstream is not None:
            self._send_pending()

    def stopProducing(self) -> None:  # noqa: N802
        self._drop("error")

    # -- the end

    def _detach(self) -> UpstreamConnection | None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            if self.producing:
                self.producing = False
                if upstream.transport is not None:
                    # (over TLS the transport's producer is a wrapper of this one)
                    upstream.transport.unregisterProducer()
        return upstream

    def _drop(self, reason: str) -> None:
        if self.finished:
            return
        upstream = self._detach()
        if upstream is not None:
            upstream.abort()
        else:
            self.pool.cancel(self)  # (it may be waiting for a connection)
        self._finish(reason)

    def _finish(self, outcome: str) -> None:
        if self.finished:
            return
        self.finished = True
        Mirror.in_flight -= 1
        Mirror.held -= self.pending_size
        self.pending.clear()
        self.pending_size = 0
        if self.answer_deadline is not None:
            self.answer_deadline.cancel()
        self.metrics.mirrored(self.route, outcome)
