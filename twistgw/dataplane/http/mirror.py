"""RequestMirror: a fire-and-forget copy of a request to a mirror backend.

A ``Mirror`` takes the request as the main exchange sends it (head after the route's
filters, then the body as it arrives) to one endpoint of the mirror backend, and
reads the response only to throw it away. It never slows, fails or buffers the main
request beyond a small bound: the copy is dropped (and counted) when its backend
cannot take it now: body bytes past ``MAX_MIRROR_PENDING`` before it is connected,
a backend connection whose send buffer fills (its transport pauses the copy), too
many copies in flight in the worker, no endpoint, a full connection pool, or any
error. The main exchange never waits on, or hears from, a mirror.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twistgw.dataplane.http.messages import Headers, Response

if TYPE_CHECKING:
    from twistgw.dataplane.http.router import CompiledBackend
    from twistgw.dataplane.http.upstream import UpstreamConnection, UpstreamPool
    from twistgw.metrics import Metrics
    from twistgw.routing.ir import CertificateKey

#: Body bytes a copy holds while its backend connection is being made; past it the
#: copy is dropped (the main request's own pending bound is larger).
MAX_MIRROR_PENDING = 64 * 1024
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
        "finished",
        "upstream",
    )

    #: Copies in flight in this process (the worker).
    in_flight = 0

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
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.request_done = False
        self.finished = False
        self.upstream: UpstreamConnection | None = None

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
        self.pool.acquire(endpoint, self, tls, certificate, self.backend.http2)

    # -- the request, as the main exchange receives it

    def data(self, data: bytes) -> None:
        if self.finished:
            return
        upstream = self.upstream
        if upstream is not None:
            upstream.codec.send_data(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > MAX_MIRROR_PENDING:
            self._drop("backlog")

    def end(self) -> None:
        self.request_done = True
        if not self.finished and self.upstream is not None:
            self.upstream.codec.send_end()

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
        codec = upstream.codec
        codec.send_request(self, method, target, headers, length, None)
        pending, self.pending, self.pending_size = self.pending, [], 0
        for data in pending:
            codec.send_data(data)
        if self.request_done:
            codec.send_end()
        if self.upstream is not None:  # (sending may have failed it)
            upstream.transport.registerProducer(self, True)

    def upstream_failed(self, reason: str) -> None:
        self._drop("unavailable")

    def upstream_overflow(self, reason: str) -> None:
        self._drop("unavailable")

    def upstream_error(self, status: int, reason: str, started: bool) -> None:
        self._drop("error")

    def response_head(self, response: Response, upgrade: bytes | None) -> None:
        """The mirror's answer is ignored (its body is read and thrown away)."""

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
        """The backend does not take the copy as fast as the client sends: drop it
        rather than hold the bytes (or slow the client)."""
        self._drop("backlog")

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        self._drop("error")

    # -- the end

    def _detach(self) -> UpstreamConnection | None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            transport = upstream.transport
            if transport is not None and transport.producer is self:
                transport.unregisterProducer()
        return upstream

    def _drop(self, reason: str) -> None:
        if self.finished:
            return
        self.pending = []
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
        self.metrics.mirrored(self.route, outcome)
