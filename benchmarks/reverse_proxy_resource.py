"""Twisted's stock reverse proxy (twisted.web.proxy.ReverseProxyResource), the
baseline twistgw is measured against: one process, a new origin connection per request.

    python benchmarks/reverse_proxy_resource.py PORT ORIGIN_PORT
"""

import sys

from twisted.internet import reactor
from twisted.web import proxy, server


def main() -> None:
    port, origin = int(sys.argv[1]), int(sys.argv[2])
    site = server.Site(proxy.ReverseProxyResource("127.0.0.1", origin, b""))
    site.log = lambda request: None
    reactor.listenTCP(port, site, interface="127.0.0.1", backlog=4096)
    reactor.run()


if __name__ == "__main__":
    main()
