"""The admin endpoint: /status, /healthz, /readyz, /metrics and /config_dump."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, render: Callable[[Request], bytes]) -> None:
        super().__init__()
        self._render = render

    def render_GET(self, request: Request) -> bytes:
        return self._render(request)


def _json(request: Request, document: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(document, indent=1).encode() + b"\n"


def admin_site(
    status: Callable[[], dict],
    ready: Callable[[], tuple[bool, str]],
    metrics: Callable[[], bytes],
    config: Callable[[], dict],
) -> Site:
    """A Site serving the admin resources from the given providers."""

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
    root.putChild(b"status", _Leaf(lambda request: _json(request, status())))
    root.putChild(b"healthz", _Leaf(render_health))
    root.putChild(b"readyz", _Leaf(render_ready))
    root.putChild(b"metrics", _Leaf(render_metrics))
    root.putChild(b"config_dump", _Leaf(lambda request: _json(request, config())))
    site = Site(root)
    site.log = lambda request: None  # admin polls are not traffic worth a log line
    site.noisy = False
    site.displayTracebacks = False
    return site
