"""The admin endpoint: /status, /healthz, /readyz, /metrics, /config_dump, and the
dashboard (its page at /, its data at /dashboard.json).

With a token, /status, /config_dump, /metrics and /dashboard.json answer only requests
carrying ``Authorization: Bearer TOKEN`` (401 otherwise); the probes /healthz and
/readyz stay open, since kubelets and load balancers send no credentials, and so do the
dashboard's page, script and style sheet, which hold no data (the page asks for the
token)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twistgw.admin.shared import Busy, Prepare, SharedAnswer

log = Logger()
#: How long a computed /dashboard.json answers later requests too (pollers share it);
#: /metrics is computed for each scrape (one at a time), so it is never stale.
DASHBOARD_FRESH_SECONDS = 1.0


class _Leaf(Resource):
    """A resource rendered by ``render``; with a ``token``, only for requests bearing it."""

    isLeaf = True

    def __init__(
        self, render: Callable[[Request], bytes | Deferred], token: str | None = None
    ) -> None:
        super().__init__()
        self._render = render
        self._token = None if token is None else token.encode()

    def render_GET(self, request: Request) -> bytes | int:
        if self._token is not None and not self._bears_token(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="twistgw-admin"')
            request.setHeader(b"content-type", b"text/plain")
            return b"a bearer token is required\n"
        body = self._render(request)
        if not isinstance(body, Deferred):
            return body
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        body.addCallbacks(
            lambda data: _finish(request, gone, data), lambda f: _fail(request, gone, f)
        )
        return NOT_DONE_YET

    def _bears_token(self, request: Request) -> bool:
        scheme, _, credentials = (request.getHeader(b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)


#: The dashboard's files: path, file in this package, content type.
_ASSETS = (
    (b"", "dashboard.html", b"text/html; charset=utf-8"),
    (b"dashboard.js", "dashboard.js", b"text/javascript; charset=utf-8"),
    (b"dashboard.css", "dashboard.css", b"text/css; charset=utf-8"),
)
#: Scripts and styles from these files only: no inline script, nothing from elsewhere.
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _finish(request: Request, gone: list[bool], data: bytes) -> None:
    if not gone:
        request.write(data)
        request.finish()


def _fail(request: Request, gone: list[bool], failure: Failure) -> None:
    if failure.check(Busy):
        code, body = 503, b"too many requests wait for this answer; try again\n"
    else:
        log.failure("rendering {path} failed", failure, path=request.path)
        code, body = 500, b"the answer could not be computed\n"
    if not gone:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain")
        _finish(request, gone, body)


def _asset(body: bytes, content_type: bytes) -> Callable[[Request], bytes]:
    def render(request: Request) -> bytes:
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"content-security-policy", _CSP)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return body

    return render


def _json(request: Request, document: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, indent=1).encode() + b"\n"


def admin_site(
    status: Callable[[], dict],
    ready: Callable[[], tuple[bool, str]],
    metrics: Prepare,
    config: Callable[[], dict],
    dashboard: Callable[[], Callable[[], dict]],
    clock: IReactorTime,
    token: str | None = None,
) -> Site:
    """A Site serving the admin resources from the given providers; with a ``token``,
    all but the probes and the dashboard's files require it as a bearer token.
    ``metrics`` and ``dashboard`` prepare on the reactor the work that then runs in a
    thread (see shared.py)."""
    shared_metrics = SharedAnswer(metrics, clock, 0.0)

    def dashboard_body() -> Callable[[], bytes]:
        work = dashboard()
        return lambda: json.dumps(work()).encode() + b"\n"

    shared_dashboard = SharedAnswer(dashboard_body, clock, DASHBOARD_FRESH_SECONDS)

    def render_ready(request: Request) -> bytes:
        ok, why = ready()
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"text/plain")
        return (why + "\n").encode()

    def render_metrics(request: Request) -> Deferred:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return shared_metrics.get()

    def render_dashboard(request: Request) -> Deferred:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return shared_dashboard.get()

    def render_health(request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"ok\n"

    root = Resource()
    root.putChild(b"status", _Leaf(lambda request: _json(request, status()), token))
    root.putChild(b"healthz", _Leaf(render_health))
    root.putChild(b"readyz", _Leaf(render_ready))
    root.putChild(b"metrics", _Leaf(render_metrics, token))
    root.putChild(b"config_dump", _Leaf(lambda request: _json(request, config()), token))
    root.putChild(b"dashboard.json", _Leaf(render_dashboard, token))
    here = files(__package__)
    for path, name, content_type in _ASSETS:
        root.putChild(path, _Leaf(_asset(here.joinpath(name).read_bytes(), content_type)))
    site = Site(root)
    site.log = lambda request: None  # admin polls are not traffic worth a log line
    site.noisy = False
    site.displayTracebacks = False
    return site
