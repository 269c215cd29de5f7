"""Run by tests/test_tlswrite.py in its own process: a BatchedTLS server (under the
workers' reactor with the argument ``batched``, else Twisted's default one) writes in
pieces, in sequences and then closes in the same turn, and floods a client that reads
late; a real TLS client checks what arrived. Prints JSON."""

import hashlib
import json
import sys

if sys.argv[1:] == ["batched"]:
    from twistgw.dataplane import reactor as fast_reactor

    assert fast_reactor.install() == "FastEPollReactor"

from twisted.internet import defer, protocol, reactor, ssl, task  # noqa: E402

from tests.support.certs import CA  # noqa: E402
from twistgw.dataplane.tlswrite import BatchedTLS, BatchedTLSFactory  # noqa: E402

FLOOD = [bytes([i % 251]) * (i * 7919 % 100000 + 1) for i in range(100)]


class Server(protocol.Protocol):
    def connectionMade(self):
        self.factory.batched.append(self.transport.write.__func__ is BatchedTLS._gather)

    def dataReceived(self, data):
        if data == b"pieces":
            for piece in (b"one ", b"two "):
                self.transport.write(piece)
            self.transport.writeSequence([b"three ", b"four "])
            self.transport.write(b"five")
            self.transport.loseConnection()
        elif data == b"ping":  # answered, the connection kept: then from a timer
            self.transport.write(b"pong")
            reactor.callLater(0.05, self.transport.write, b", later")
        elif data == b"flood":
            for piece in FLOOD:
                self.transport.write(piece)
            self.transport.loseConnection()


class Client(protocol.Protocol):
    def connectionMade(self):
        self.received = []
        self.transport.write(self.factory.ask)
        if self.factory.ask == b"flood":  # read nothing for a while: the server backs up
            self.transport.pauseProducing()
            reactor.callLater(0.3, self.transport.resumeProducing)

    def dataReceived(self, data):
        self.received.append(data)
        if self.factory.ask == b"ping" and b"".join(self.received) == b"pong, later":
            self.transport.loseConnection()  # (the client closes: all came)

    def connectionLost(self, reason):
        if not self.factory.done.called:
            self.factory.done.callback(b"".join(self.received))


@defer.inlineCallbacks
def main(_):
    ca = CA()
    cert_pem, key_pem = ca.issue("tls.example.com")
    server_options = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    server = protocol.Factory.forProtocol(Server)
    server.batched = []
    port = reactor.listenTCP(
        0, BatchedTLSFactory(server_options, False, server), interface="127.0.0.1"
    )
    trust = ssl.Certificate.loadPEM(ca.pem)
    results = {}
    for ask in (b"pieces", b"ping", b"flood"):
        client = protocol.ClientFactory.forProtocol(Client)
        client.ask, client.done = ask, defer.Deferred()
        reactor.connectSSL(
            "127.0.0.1",
            port.getHost().port,
            client,
            ssl.optionsForClientTLS("tls.example.com", trust),
        )
        timeout = reactor.callLater(10, client.done.callback, b"(nothing more in 10 s)")
        results[ask] = yield client.done
        if timeout.active():
            timeout.cancel()
    yield port.stopListening()
    yield task.deferLater(reactor, 0, lambda: None)
    print(
        json.dumps(
            {
                "batched": server.batched,
                "pieces": results[b"pieces"].decode(),
                "kept_alive": results[b"ping"].decode(),
                "flood_in_order": hashlib.sha256(results[b"flood"]).hexdigest()
                == hashlib.sha256(b"".join(FLOOD)).hexdigest(),
            }
        )
    )


task.react(main)
