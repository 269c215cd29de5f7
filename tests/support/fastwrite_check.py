"""Run by tests/test_fastwrite.py in its own process (it needs a running reactor):
exercises dataplane/fastwrite.py on a real TCP connection and prints JSON. With the
argument ``batched``, under the workers' reactor (writes sent once per turn), else
under Twisted's default one (writes sent at once)."""

import hashlib
import json
import sys

if sys.argv[1:] == ["batched"]:
    from twistgw.dataplane import reactor as fast_reactor

    assert fast_reactor.install() == "FastEPollReactor"

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

from twistgw.dataplane.fastwrite import WriteBatch, has_pending, writer_for

PIECES = [bytes([i % 251]) * (i * 997 % 200000 + 1) for i in range(200)]
EXPECTED = hashlib.sha256(b"".join(PIECES)).hexdigest()


class Sink(protocol.Protocol):
    def connectionMade(self):
        self.digest = hashlib.sha256()
        self.size = 0
        self.transport.pauseProducing()  # read nothing at first: sends fill the kernel buffer
        reactor.callLater(0.3, self.transport.resumeProducing)

    def dataReceived(self, data):
        self.digest.update(data)
        self.size += len(data)
        if self.size == sum(map(len, PIECES)):
            self.factory.done.callback(self.digest.hexdigest())


class Source(protocol.Protocol):
    def connectionMade(self):
        write = writer_for(self.transport)
        self.factory.shortcut = write is not self.transport.write
        for piece in PIECES:
            write(piece)


class Collect(protocol.Protocol):
    """Keeps what it receives; fires the factory's ``done`` with it on close."""

    def connectionMade(self):
        self.received = []

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.factory.done.callback(b"".join(self.received))


class WriteAndClose(protocol.Protocol):
    """Writes in one turn and closes in the same turn, then (a second connection)
    writes from a timer, outside any I/O event, and closes."""

    def connectionMade(self):
        write = writer_for(self.transport)
        if self.factory.from_timer:
            reactor.callLater(0.05, self.later, write)
            return
        for piece in (b"one ", b"two ", b"three"):
            write(piece)
        self.transport.loseConnection()

    def later(self, write):
        write(b"from a timer")
        self.transport.loseConnection()


class Pair(protocol.Protocol):
    """Once two connections are open, a timer writes a str (a bug) to the first and
    an answer to the second, in one turn, and closes both."""

    def connectionMade(self):
        self.write = writer_for(self.transport)
        self.factory.open.append(self)
        if len(self.factory.open) == 2:
            reactor.callLater(0.05, self.both, *self.factory.open)

    @staticmethod
    def both(bad, good):
        try:
            bad.write("not bytes")
        except TypeError:  # (sent at once, outside a batch: the writer's caller sees it)
            bad.transport.abortConnection()
        good.write(b"the other answer")
        bad.transport.loseConnection()
        good.transport.loseConnection()


@defer.inlineCallbacks
def bad_write_beside_a_good_one():
    """What the two clients of a Pair got: the bad write ends its own connection
    only (under the batch too, where it fails at the end of the turn)."""
    pair = protocol.Factory.forProtocol(Pair)
    pair.open = []
    port = reactor.listenTCP(0, pair, interface="127.0.0.1")
    received = []
    for _ in range(2):
        collect = protocol.ClientFactory.forProtocol(Collect)
        collect.done = defer.Deferred()
        reactor.connectTCP("127.0.0.1", port.getHost().port, collect)
        received.append(collect.done)
        yield task.deferLater(reactor, 0.02, lambda: None)  # (connected in this order)
    results = yield defer.gatherResults(received)
    yield port.stopListening()
    return [data.decode() for data in results]


@defer.inlineCallbacks
def received_from(from_timer: bool):
    """What a WriteAndClose connection delivered before its close."""
    collect = protocol.Factory.forProtocol(Collect)
    collect.done = defer.Deferred()
    port = reactor.listenTCP(0, collect, interface="127.0.0.1")
    writer = protocol.ClientFactory.forProtocol(WriteAndClose)
    writer.from_timer = from_timer
    reactor.connectTCP("127.0.0.1", port.getHost().port, writer)
    data = yield collect.done
    yield port.stopListening()
    return data


@defer.inlineCallbacks
def main(_):
    sink_factory = protocol.Factory.forProtocol(Sink)
    sink_factory.done = defer.Deferred()
    port = reactor.listenTCP(0, sink_factory, interface="127.0.0.1")
    source_factory = protocol.ClientFactory.forProtocol(Source)
    reactor.connectTCP("127.0.0.1", port.getHost().port, source_factory)
    digest = yield sink_factory.done
    string_transport = StringTransport()
    tls_factory = TLSMemoryBIOFactory(
        optionsForClientTLS("example.com"),
        True,
        protocol.ClientFactory.forProtocol(protocol.Protocol),
    )
    tls_done = defer.Deferred()

    class Probe(protocol.Protocol):
        def connectionMade(self):
            tls_done.callback(writer_for(self.transport) == self.transport.write)
            self.transport.abortConnection()

    tls_factory.wrappedFactory = protocol.ClientFactory.forProtocol(Probe)
    reactor.connectTCP("127.0.0.1", port.getHost().port, tls_factory)
    tls_falls_back = yield tls_done
    closed_after_batch = yield received_from(False)
    written_from_timer = yield received_from(True)
    bad_and_good = yield bad_write_beside_a_good_one()
    print(
        json.dumps(
            {
                "tcp_shortcut": source_factory.shortcut,
                "batched": isinstance(getattr(reactor, "write_batch", None), WriteBatch),
                "in_order": digest == EXPECTED,
                "fallback_is_plain_write": writer_for(string_transport) == string_transport.write,
                "unknown_transport_counts_as_pending": has_pending(string_transport),
                "tls_transport_falls_back": tls_falls_back,
                "batch_sent_before_close": closed_after_batch.decode(),
                "timer_write_sent": written_from_timer.decode(),
                "bad_write_and_good_one": bad_and_good,
            }
        )
    )


task.react(main)
