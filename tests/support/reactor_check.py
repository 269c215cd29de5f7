"""Run by tests/test_reactor.py in its own process: the workers' reactor serves real
TCP connections, and a protocol that raises loses its connection, not the reactor."""

import json

from twistgw.dataplane import reactor as fast_reactor

name = fast_reactor.install()

from twisted.internet import defer, protocol, reactor, task  # noqa: E402


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        if data == b"boom":
            raise RuntimeError("a bug in a protocol")
        self.transport.write(data)


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
    print(
        json.dumps(
            {
                "reactor": name,
                "echoed": len(first),
                "broken": broken.decode(),
                "after": after.decode(),
            }
        )
    )


task.react(main)
