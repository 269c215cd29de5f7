"""Binds the table's listeners and keeps each one's router current."""

from __future__ import annotations

import errno

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.http.upstream import UpstreamPool
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, RoutingTable

log = Logger()


def endpoint_string(bind: Bind) -> str:
    """The Twisted server endpoint description of a bind."""
    address = bind.address.replace(":", "\\:")
    return f"tcp:{bind.port}:interface={address}:backlog=1024"


class DataPlane:
    """Serves a RoutingTable: one listening port per bind. Applying a new table swaps
    each port's router in one assignment (requests in flight keep theirs), opens the
    binds that are new and closes the ones that are gone."""

    def __init__(self, reactor, metrics: Metrics) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.pool = UpstreamPool(reactor)
        self._factories: dict[tuple[str, int], HTTPProxyFactory] = {}
        self._ports: dict[tuple[str, int], IListeningPort] = {}
        self._opening: dict[tuple[str, int], defer.Deferred] = {}
        self._closing: dict[tuple[str, int], defer.Deferred] = {}
        self.failed: dict[tuple[str, int], str] = {}
        self.unusable: set[str] = set()

    def apply(self, table: RoutingTable) -> defer.Deferred:
        """Serve ``table``; fires once every new bind is listening (or has failed)."""
        wanted = {(b.address, b.port): b for b in table.binds}
        waits = []
        for key, bind in wanted.items():
            router = Router(bind)
            factory = self._factories.get(key)
            if factory is not None:
                factory.router = router
                continue
            factory = HTTPProxyFactory(router, self.pool, self.metrics, self.reactor)
            self._factories[key] = factory
            waits.append(self._listen(key, bind, factory))
        for key in list(self._factories) + list(self.failed):
            if key not in wanted:
                self._close(key)
        wanted_addresses = {address for address, _ in wanted}
        self.unusable &= wanted_addresses
        return defer.gatherResults(waits, consumeErrors=True)

    def _listen(self, key: tuple[str, int], bind: Bind, factory) -> defer.Deferred:
        closing = self._closing.get(key)
        if closing is not None:  # the same socket is still closing: listen after it
            d = defer.Deferred()
            closing.addBoth(lambda _: d.callback(None))
            d.addCallback(
                lambda _: serverFromString(self.reactor, endpoint_string(bind)).listen(factory)
            )
        else:
            d = serverFromString(self.reactor, endpoint_string(bind)).listen(factory)

        def listening(port: IListeningPort) -> None:
            self._opening.pop(key, None)
            if self._factories.get(key) is not factory:  # removed while opening
                port.stopListening()
                return
            self._ports[key] = port
            self.failed.pop(key, None)
            self.unusable.discard(bind.address)
            log.info("listening on {address}:{port}", address=bind.address, port=bind.port)

        def failed(reason) -> None:
            self._opening.pop(key, None)
            if self._factories.get(key) is factory:
                del self._factories[key]
            self.failed[key] = reason.getErrorMessage()
            socket_error = getattr(reason.value, "socketError", None)
            if getattr(socket_error, "errno", None) == errno.EADDRNOTAVAIL:
                self.unusable.add(bind.address)
            log.error(
                "cannot listen on {address}:{port}: {error}",
                address=bind.address,
                port=bind.port,
                error=reason.getErrorMessage(),
            )

        d.addCallbacks(listening, failed)
        self._opening[key] = d
        return d

    def _close(self, key: tuple[str, int]) -> None:
        self._factories.pop(key, None)
        self.failed.pop(key, None)
        port = self._ports.pop(key, None)
        if port is not None:
            closed = defer.maybeDeferred(port.stopListening)  # open connections finish
            self._closing[key] = closed

            def forget(_, key=key, closed=closed):
                if self._closing.get(key) is closed:
                    del self._closing[key]

            closed.addBoth(forget)
            log.info("stopped listening on {address}:{port}", address=key[0], port=key[1])

    def feedback(self) -> tuple[dict[tuple[str, int], str], frozenset[str]]:
        """What could not be bound: (address, port) -> why, and unusable addresses."""
        return dict(self.failed), frozenset(self.unusable)

    def listening(self) -> set[tuple[str, int]]:
        return set(self._ports)

    def stop(self) -> defer.Deferred:
        waits = [defer.maybeDeferred(port.stopListening) for port in self._ports.values()]
        self._ports.clear()
        self._factories.clear()
        self.pool.close_idle()
        return defer.gatherResults(waits, consumeErrors=True)
