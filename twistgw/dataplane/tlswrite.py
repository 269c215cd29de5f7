"""Twisted's TLS layer, gathering a turn's writes through the workers' write batch.

Twisted's TLS factories build ``BufferingTLSTransport``: a write waits for a
``callLater(0)`` that turns the writes gathered meanwhile into one TLS record, whose
bytes the TCP transport then queues and writes on a later reactor turn (a write
registration, a turn, an unregistration). Under the workers' reactor ``BatchedTLS``
keeps a turn's writes in the reactor's ``WriteBatch`` instead: at the end of the turn
they become one record per connection, and the record's bytes leave with the turn's
other writes in one ``send`` (``dataplane/fastwrite.py``). Every write to the TCP
transport beneath (handshake, records, alerts) goes through its batch writer, so
their order is kept. Under another reactor it is Twisted's class unchanged.

This overrides ``BufferingTLSTransport``'s public methods only (``makeConnection``,
``write``, ``writeSequence``, ``loseConnection``, ``unregisterProducer``,
``connectionLost``); ``tests/test_tlswrite.py`` checks
it against real TLS connections under both reactors.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from twistgw.dataplane.fastwrite import WriteBatch, write_batch_of, writer_for


class BatchedTLS(BufferingTLSTransport):
    """A TLS connection whose writes of a reactor turn become one record at its end."""

    _batch: WriteBatch | None = None

    def makeConnection(self, transport) -> None:  # noqa: N802 (Twisted's interface)
        batch = write_batch_of(transport)
        if batch is not None:
            self._batch = batch
            transport.write = writer_for(transport)  # (before TLS writes anything)
            self.write = self._gather
        super().makeConnection(transport)

    def _gather(self, data: bytes) -> None:
        if type(data) is not bytes:
            raise TypeError("Data must be bytes")  # (as Twisted's own write says)
        layers = self._batch.layers
        chunks = layers.get(self)
        if chunks is None:
            layers[self] = [data]
        else:
            chunks.append(data)

    def writeSequence(self, sequence: Iterable[bytes]) -> None:  # noqa: N802
        self.write(b"".join(sequence))

    def send_batched(self, data: bytes) -> None:
        """Encrypt what the turn wrote (the batch calls this at the turn's end)."""
        TLSMemoryBIOProtocol.write(self, data)

    def _send_gathered(self) -> None:
        """Encrypt what this turn wrote so far, now."""
        if self._batch is not None:
            chunks = self._batch.layers.pop(self, None)
            if chunks:
                self.send_batched(b"".join(chunks))

    def loseConnection(self) -> None:  # noqa: N802
        """Close after what was written this turn (encrypted first)."""
        self._send_gathered()
        super().loseConnection()

    def unregisterProducer(self) -> None:  # noqa: N802
        """(A close waiting for the producer follows what was written this turn.)"""
        self._send_gathered()
        super().unregisterProducer()

    def connectionLost(self, reason) -> None:  # noqa: N802
        if self._batch is not None:
            self._batch.layers.pop(self, None)
        super().connectionLost(reason)


class BatchedTLSFactory(TLSMemoryBIOFactory):
    """Twisted's TLS factory, building ``BatchedTLS`` connections."""

    protocol = BatchedTLS
