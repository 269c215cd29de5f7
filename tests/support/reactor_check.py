"""Run by tests/test_reactor.py in its own process: the workers' reactor serves real
TCP connections (its own read path: data, a half-close, a reset), and a protocol that
raises loses its connection, not the reactor."""

import json
import socket
import struct

from twistgw.dataplane import reactor as fast_reactor

name = fast_reactor.install()

from twisted.internet import defer, error, protocol, reactor, task  # noqa: E402
from twisted.internet.interfaces import IHalfCloseableProtocol  # noqa: E402
from zope.interface import implementer  # noqa: E402


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        if data == b"boom":
            raise RuntimeError("a bug in a protocol")
        self.transport.write(data)


@implementer(IHalfCloseableProtocol)
class Replier(protocol.Protocol):
    """Answers what it got once the client has sent all (a half-close); records how
    its connections ended."""

    def connectionMade(self):
        self.received = b""

    def dataReceived(self, data):
        self.received += data

    def readConnectionLost(self):
        self.transport.write(b"got " + self.received)
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.factory.ended.append(reason.type)


class HalfClosing(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.transport.write(b"all of it")
        self.transport.loseWriteConnection()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.factory.done.callback(self.received)


class Client(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.transport.write(self.factory.payload)

    def dataReceived(self, data):
        self.received += data
        if self.received == self.factory.payload:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.done.callback(self.received)


def exchange(port, payload):
    factory = protocol.ClientFactory.forProtocol(Client)
    factory.payload, factory.done = payload, defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, factory)
    return factory.done


@defer.inlineCallbacks
def main(_):
    server = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    port = server.getHost().port
    first = yield exchange(port, b"x" * 300000)
    broken = yield exchange(port, b"boom")
    after = yield exchange(port, b"still serving")
    replier = protocol.Factory.forProtocol(Replier)
    replier.ended = []
    port = reactor.listenTCP(0, replier, interface="127.0.0.1").getHost().port
    half = protocol.ClientFactory.forProtocol(HalfClosing)
    half.done = defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, half)
    answered = yield half.done
    resetting = socket.create_connection(("127.0.0.1", port))
    resetting.sendall(b"then a reset")
    yield task.deferLater(reactor, 0.2, lambda: None)
    resetting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    resetting.close()
    while len(replier.ended) < 2:
        yield task.deferLater(reactor, 0.05, lambda: None)
    print(
        json.dumps(
            {
                "reactor": name,
                "echoed": len(first),
                "broken": broken.decode(),
                "after": after.decode(),
                "after_half_close": answered.decode(),
                "ended": [
                    "done" if kind is error.ConnectionDone else "lost" for kind in replier.ended
                ],
            }
        )
    )


task.react(main)
