"""A minimal fast origin for benchmarks when nginx is not installed: answers every
request with a fixed response (``/big``: 1 MiB), keep-alive and pipelining aware.

    python benchmarks/origin.py PORT
"""

from __future__ import annotations

import sys

from twisted.internet import protocol, reactor

SMALL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
BIG_BODY = b"x" * (1024 * 1024)
BIG = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
    % len(BIG_BODY)
)


class Origin(protocol.Protocol):
    buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.split(b" ", 2)[1].startswith(b"/big"):
                self.transport.writeSequence((BIG, BIG_BODY))
            else:
                self.transport.write(SMALL)
            if b"connection: close" in head.lower():
                self.transport.loseConnection()
                return


def main() -> None:
    factory = protocol.Factory.forProtocol(Origin)
    factory.noisy = False
    reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1", backlog=4096)
    reactor.run()


if __name__ == "__main__":
    main()
