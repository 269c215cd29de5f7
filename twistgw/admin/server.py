"""The admin endpoint: /status, /healthz, /readyz, /metrics and /config_dump.

With a token, /status, /config_dump and /metrics answer only requests carrying
``Authorization: Bearer TOKEN`` (401 otherwise); the probes /healthz and /readyz stay
open, since kubelets and load balancers send no credentials."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class _Leaf(Resource):
    """A resource rendered by ``render``; with a ``token``, only for requests bearing it."""

    isLeaf = True

    def __init__(self, render: Callable[[Request], bytes], token: str | None = None) -> None:
        super().__init__()
        self._render = render
        self._token = None if token is None else token.encode()

    def render_GET(self, request: Request) -> bytes:
        if self._token is not None and not self._bears_token(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="twistgw-admin"')
            request.setHeader(b"content-type", b"text/plain")
            return b"a bearer token is required\n"
        return self._render(request)

    def _bears_token(self, request: Request) -> bool:
        scheme, _, credentials = (request.getHeader(b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)


def _json(request: Request, document: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(document, indent=1).encode() + b"\n"


def admin_site(
    status: Callable[[], dict],
    ready: Callable[[], tuple[bool, str]],
    metrics: Callable[[], bytes],
    config: Callable[[], dict],
    token: str | None = None,
) -> Site:
    """A Site serving the admin resources from the given providers; with a ``token``,
    all but the probes require it as a bearer token."""

    def render_ready(request: Request) -> bytes:
        ok, why = ready()
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"text/plain")
        return (why + "\n").encode()

    def render_metrics(request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return metrics()

    def render_health(request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"ok\n"

    root = Resource()
    root.putChild(b"status", _Leaf(lambda request: _json(request, status()), token))
    root.putChild(b"healthz", _Leaf(render_health))
    root.putChild(b"readyz", _Leaf(render_ready))
    root.putChild(b"metrics", _Leaf(render_metrics, token))
    root.putChild(b"config_dump", _Leaf(lambda request: _json(request, config()), token))
    site = Site(root)
    site.log = lambda request: None  # admin polls are not traffic worth a log line
    site.noisy = False
    site.displayTracebacks = False
    return site
