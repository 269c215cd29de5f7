"""Run by tests/test_tlswrite.py in its own process, under the workers' reactor: an
HTTP connection's ``when_drained`` (what a pipelined request waits on) while its TLS
client reads nothing for a while; counts how often the connection looked for its
answers to be sent. Prints JSON."""

import json
import types

from twistgw.dataplane import reactor as fast_reactor

assert fast_reactor.install() == "FastEPollReactor"

from twisted.internet import defer, protocol, reactor, ssl, task  # noqa: E402

from tests.support.certs import CA  # noqa: E402
from twistgw.dataplane.http import server  # noqa: E402
from twistgw.dataplane.tlswrite import BatchedTLSFactory  # noqa: E402

ANSWER = 8 << 20  # (more than the sockets' buffers hold)
STALL = 1.0  # seconds the client reads nothing
looks = []
_has_pending = server.has_pending


def counted(transport):
    looks.append(1)
    return _has_pending(transport)


server.has_pending = counted


class Answering(protocol.Protocol):
    """Writes an answer, then (a turn later, once it is queued) waits for it to drain
    as the HTTP connection would."""

    def dataReceived(self, data):
        self.transport.write(b"x" * ANSWER)
        reactor.callLater(0.05, self.wait)

    def wait(self):
        factory = types.SimpleNamespace(
            clock=reactor, pool=None, metrics=None, settings=None, access_log=None, scheme="https"
        )
        connection = server.HTTPServerProtocol(factory)
        connection.transport = self.transport
        looks.clear()
        connection.when_drained(lambda: self.factory.drained.callback(len(looks)))


class Stalling(protocol.Protocol):
    """Asks, then reads nothing for STALL seconds once the answer begins."""

    def connectionMade(self):
        self.transport.write(b"go")
        self.received = 0

    def dataReceived(self, data):
        if not self.received:  # the answer began: nothing more read for a while
            self.transport.pauseProducing()
            reactor.callLater(STALL, self.transport.resumeProducing)
        self.received += len(data)


@defer.inlineCallbacks
def main(_):
    ca = CA()
    cert, key = ca.issue("tls.example.com")
    answering = protocol.Factory.forProtocol(Answering)
    answering.drained = defer.Deferred()
    options = ssl.PrivateCertificate.loadPEM(cert + key).options()
    port = reactor.listenTCP(0, BatchedTLSFactory(options, False, answering), interface="127.0.0.1")
    stalling = protocol.ClientFactory.forProtocol(Stalling)
    trust = ssl.Certificate.loadPEM(ca.pem)
    reactor.connectSSL(
        "127.0.0.1",
        port.getHost().port,
        stalling,
        ssl.optionsForClientTLS("tls.example.com", trust),
    )
    timeout = reactor.callLater(30, answering.drained.callback, None)
    looks_until_drained = yield answering.drained
    if timeout.active():
        timeout.cancel()
    yield port.stopListening()
    print(json.dumps({"looks_until_drained": looks_until_drained}))


task.react(main)
