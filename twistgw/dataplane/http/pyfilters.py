"""Filter plugins at request time: each worker's installed and allowed plugins, the
filters they make for the PythonFilters of the current table, and the calls into them
(the request head and, for a filter that asks, its body; the response head; body
rewriters), guarded so that what a plugin raises answers that request 500 (or, once
the response has begun, cuts it short) and is counted, never more."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.extensions.filters import (
    MAX_REQUEST_BODY,
    Answer,
    Fields,
    FilterRequest,
    FilterResponse,
)
from twistgw.routing import ir

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange
    from twistgw.dataplane.http.messages import Response

log = Logger()
#: The longest body a filter's Answer may have.
MAX_ANSWER_BODY = 1024 * 1024
#: The bytes of request bodies a worker may be reading for filters at once (each
#: counted at its filter's limit while it comes); past it, requests are answered 503.
MAX_BODIES_READING = 64 * 1024 * 1024
#: The share of it one client connection may hold (an HTTP/2 one has many streams).
MAX_BODIES_READING_PER_CONNECTION = 8 * 1024 * 1024
#: Seconds a Deferred of on_response may take before the request is answered 504.
RESPONSE_TIMEOUT = 15.0


class FilterRegistry:
    """A worker's filter plugins (``plugins``: the allowed installed ones by name) and
    the filters made from the current table's PythonFilters (dropped with each table:
    a filter lives as long as the configuration that made it)."""

    def __init__(self, plugins: dict[str, Any], metrics) -> None:
        self.plugins = plugins
        self.metrics = metrics
        self.made: dict[tuple[str, str], Any] = {}
        self.reading = 0  # bytes reserved by the request bodies being read for filters
        self.reading_by: dict[Any, int] = {}  # the same, by client connection

    def new_table(self, table: ir.RoutingTable) -> None:
        """Keep the filters the new table still uses (their state goes on), close and
        drop the others."""
        used = {
            (spec.plugin, spec.config)
            for route in table.http_routes()
            for specs in (route.filters.python, *(b.filters.python for b in route.backends))
            for spec in specs
        }
        for key, made in self.made.items():
            close = getattr(made, "close", None) if key not in used else None
            if close is not None:
                try:
                    close()
                except Exception:
                    self.failed(key[0], "close", Failure())
        self.made = {key: made for key, made in self.made.items() if key in used}

    def read_body(self, exchange: Exchange, limit: int) -> bool | Deferred:
        """Have the request's whole body read (at most ``limit`` bytes) for a filter:
        True when it is here, False when it cannot be (answered), else a Deferred
        firing with whether it came."""
        length = exchange.request.length
        if (length is not None and length > limit) or exchange.pending_size > limit:
            # (refused before the client sends it; or it came, or a filter made it, whole)
            exchange.respond_local(413, b"the request body is too large for this route\n")
            return False
        if exchange.request_done:
            return True
        held = limit if length is None else length  # (what it can grow to)
        # the client connection's codec (an HTTP/2 stream's is its connection's)
        client = getattr(exchange.down, "codec", exchange.down)
        by_client = self.reading_by.get(client, 0) + held
        if (
            self.reading + held > MAX_BODIES_READING
            or by_client > MAX_BODIES_READING_PER_CONNECTION
        ):
            log.warn("too many request bodies being read for filters: answering 503")
            exchange.respond_local(503, b"the gateway is busy: retry\n", [(b"retry-after", b"1")])
            return False
        self.reading += held
        self.reading_by[client] = by_client
        read = exchange.read_body(limit)
        return read.addBoth(self._read, held, client)

    def _read(self, came: bool, held: int, client) -> bool:
        self.reading -= held
        left = self.reading_by.pop(client) - held
        if left:
            self.reading_by[client] = left
        return came

    def filter_for(self, spec: ir.PythonFilter) -> Any:
        """The filter of a PythonFilter; raises ValueError when it cannot be made."""
        key = (spec.plugin, spec.config)
        found = self.made.get(key)
        if found is None:
            try:
                plugin = self.plugins.get(spec.plugin)
                if plugin is None:
                    raise ValueError(f"plugin {spec.plugin!r} is not installed here")
                found = plugin.make(json.loads(spec.config))
            except Exception as exc:  # (remembered: make is not tried on every request)
                found = _Unmade(f"{type(exc).__name__}: {exc}")
            self.made[key] = found
        if isinstance(found, _Unmade):
            # (a new exception each time: raising a stored one would grow its traceback)
            raise ValueError(f"plugin {spec.plugin!r} could not make the filter: {found.why}")
        return found

    def failed(self, plugin: str, where: str, failure) -> None:
        log.failure("filter plugin {plugin} failed in {where}", failure, plugin=plugin, where=where)
        self.metrics.filter_failed(plugin)


class _Unmade:
    """A filter its plugin could not make (for this table): why."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class CompiledPythonFilters:
    """A rule's (or a backendRef's, or both's) PythonFilters, in order."""

    __slots__ = ("specs",)

    def __init__(self, specs: Iterable[ir.PythonFilter]) -> None:
        self.specs = tuple(specs)

    def request_checks(self, attempt: bool = False) -> list:
        """One check per filter for the exchange's chain of checks (see policies.py):
        True to go on, False having answered, or a Deferred of either. ``attempt``: a
        backendRef's filters, run on each attempt sent to that backend (the fields they
        set are that attempt's; they cannot have the body)."""
        return [_RequestCheck(spec, attempt) for spec in self.specs]

    def on_response(
        self, exchange: Exchange, response: Response, step: int = 0, view=None
    ) -> bool | Deferred:
        """Let each filter see the response head, from filter ``step`` on: True to go
        on (with the body rewriters they gave in ``exchange.rewrite``), False when one
        failed (answered 500 here), or a Deferred of either when one returned one."""
        registry = exchange.conn.factory.guards.filters
        specs = self.specs
        while step < len(specs):
            spec = specs[step]
            step += 1
            try:
                hook = getattr(registry.filter_for(spec), "on_response", None)
                if hook is None:
                    continue
                if view is None:  # (made when a filter has on_response: most have not)
                    view = FilterResponse(response.status, Fields(list(response.headers)))
                outcome = hook(exchange.filter_request, view)
            except Exception:
                return _failed(exchange, registry, spec.plugin, "on_response", Failure())
            if isinstance(outcome, Deferred):
                timer = exchange.conn.clock.callLater(
                    RESPONSE_TIMEOUT, _too_long, exchange, spec.plugin
                )
                exchange.filter_wait = outcome
                return outcome.addBoth(self._later, exchange, response, step, view, timer)
            if not self._taken(exchange, response, spec, view, outcome):
                return False
        if view is not None:
            response.headers = view.headers.as_list()
        return True

    def _later(
        self, outcome, exchange: Exchange, response: Response, step: int, view, timer
    ) -> bool | Deferred:
        exchange.filter_wait = None
        if timer.active():
            timer.cancel()
        if exchange.finished:
            return False  # (the deadline, a timeout or the client's leaving came first)
        spec = self.specs[step - 1]
        if isinstance(outcome, Failure):
            registry = exchange.conn.factory.guards.filters
            return _failed(exchange, registry, spec.plugin, "on_response", outcome)
        if not self._taken(exchange, response, spec, view, outcome):
            return False
        return self.on_response(exchange, response, step, view)

    @staticmethod
    def _taken(exchange: Exchange, response: Response, spec, view, outcome) -> bool:
        """Apply what a filter's on_response gave (a status, a body rewriter); False
        when it is not usable (answered 500)."""
        try:
            if not isinstance(view.headers, Fields):
                raise TypeError(f"response.headers became a {type(view.headers).__name__}")
            if view.status != response.status:
                status = view.status
                if type(status) is not int or not 200 <= status <= 599 or status in (204, 304):
                    raise ValueError(f"a filter may set 200-599 but 204 and 304, not {status!r}")
                if response.status == 101:
                    raise ValueError("the status of an upgrade's 101 cannot be changed")
                response.status = status
            if outcome is not None:
                if not callable(getattr(outcome, "data", None)) or not callable(
                    getattr(outcome, "end", None)
                ):
                    raise TypeError(
                        f"on_response returned {type(outcome).__name__}: None or a BodyRewriter"
                    )
                if response.status in (101, 204, 304) or exchange.method == b"HEAD":
                    return True  # (no body to rewrite: its length stays)
                if exchange.rewrite is None:
                    exchange.rewrite = BodyRewrite()
                exchange.rewrite.stages.append((spec.plugin, outcome))
                response.length = None  # (a rewritten body's length is not known)
        except Exception:
            registry = exchange.conn.factory.guards.filters
            return _failed(exchange, registry, spec.plugin, "on_response", Failure())
        return True


class BodyRewrite:
    """The body rewriters a response's filters gave, in order: each gets what the
    one before it made."""

    __slots__ = ("stages",)

    def __init__(self) -> None:
        self.stages: list[tuple[str, Any]] = []

    def data(self, registry: FilterRegistry, data: bytes) -> bytes | None:
        """The bytes to send for ``data``; None when a rewriter failed (logged and
        counted: the response must be cut short)."""
        for plugin, rewriter in self.stages:
            try:
                data = _bytes(rewriter.data(data))
            except Exception:
                registry.failed(plugin, "a body rewriter", Failure())
                return None
        return data

    def end(self, registry: FilterRegistry) -> bytes | None:
        """The last bytes: each rewriter's end, through the rewriters after it."""
        data = b""
        for plugin, rewriter in self.stages:
            try:
                data = (_bytes(rewriter.data(data)) if data else b"") + _bytes(rewriter.end())
            except Exception:
                registry.failed(plugin, "a body rewriter", Failure())
                return None
        return data


def _bytes(data) -> bytes:
    if not isinstance(data, bytes):
        raise TypeError(f"a body rewriter returned {type(data).__name__}, not bytes")
    return data


def _failed(exchange: Exchange, registry: FilterRegistry, plugin: str, where: str, failure) -> bool:
    registry.failed(plugin, where, failure)
    exchange.respond_local(500, b"a filter of this route failed\n")
    return False


def _too_long(exchange: Exchange, plugin: str) -> None:
    log.warn("filter plugin {plugin}: on_response did not answer in time", plugin=plugin)
    exchange.respond_local(504, b"a filter of this route did not answer in time\n")


class _RequestCheck:
    __slots__ = ("spec", "attempt")

    def __init__(self, spec: ir.PythonFilter, attempt: bool) -> None:
        self.spec = spec
        self.attempt = attempt

    def __call__(self, exchange: Exchange) -> bool | Deferred:
        spec = self.spec
        if spec.problem is not None:
            log.warn("{route}: {problem}", route=exchange.route.name, problem=spec.problem)
            exchange.respond_local(500, b"a filter of this route cannot be used\n")
            return False
        registry = exchange.conn.factory.guards.filters
        if exchange.filter_request is None:
            exchange.filter_request = _request_view(exchange)  # (for every filter after)
        try:
            made = registry.filter_for(spec)
            limit = getattr(made, "request_body_limit", 0)
            if type(limit) is not int or limit < 0:
                raise TypeError(f"request_body_limit must be an int from 0, not {limit!r}")
            if limit and self.attempt:
                raise TypeError("a backendRef's filter cannot have the body (request_body_limit)")
        except Exception:
            return _failed(exchange, registry, spec.plugin, "make", Failure())
        if not limit:
            return self._call(exchange, registry, made, None)
        read = registry.read_body(exchange, min(limit, MAX_REQUEST_BODY))
        if read is True:
            return self._call(exchange, registry, made, b"".join(exchange.pending))
        if read is False:
            return False
        return read.addCallback(self._body_came, exchange, registry, made)

    def _body_came(
        self, came: bool, exchange: Exchange, registry: FilterRegistry, made
    ) -> bool | Deferred:
        if not came or exchange.finished:
            return False
        return self._call(exchange, registry, made, b"".join(exchange.pending))

    def _call(
        self, exchange: Exchange, registry: FilterRegistry, made, body: bytes | None
    ) -> bool | Deferred:
        request = exchange.filter_request
        request.body = body
        try:
            outcome = made.on_request(request)
        except Exception:
            return self._settled(Failure(), exchange, registry, body)
        if isinstance(outcome, Deferred):
            exchange.filter_wait = outcome
            return outcome.addBoth(self._settled, exchange, registry, body)
        return self._settled(outcome, exchange, registry, body)

    def _settled(self, result, exchange: Exchange, registry: FilterRegistry, body) -> bool:
        exchange.filter_wait = None
        if exchange.finished:
            return False
        plugin = self.spec.plugin
        if isinstance(result, Failure):
            return _failed(exchange, registry, plugin, "on_request", result)
        view = exchange.filter_request
        try:
            if self.attempt:
                exchange.attempt_headers = view.headers.as_list()
            else:
                exchange.request.headers = view.headers.as_list()
            if view.body is not body:
                if body is None:
                    raise ValueError("only a filter with a request_body_limit has the body")
                _replace_body(exchange, view.body)
            view.body = None  # (only a filter that asked sees it)
            if result is None:
                return True
            if not isinstance(result, Answer):
                raise TypeError(f"on_request returned {type(result).__name__}: None or an Answer")
            answer = _answer(result)
        except Exception:
            return _failed(exchange, registry, plugin, "on_request", Failure())
        exchange.respond_local(*answer)
        return False


def _replace_body(exchange: Exchange, body) -> None:
    """The body a filter gave instead of the client's (sent with its own length)."""
    if not isinstance(body, bytes) or len(body) > MAX_REQUEST_BODY:
        raise ValueError(f"a request's body must be bytes, at most {MAX_REQUEST_BODY}")
    exchange.pending = [body] if body else []
    exchange.pending_size = len(body)
    exchange.request.length = len(body)
    exchange.request.has_body = bool(body)


def _answer(answer: Answer) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A filter's Answer as the exchange sends it, checked like fields a filter sets."""
    if not isinstance(answer.status, int) or not 200 <= answer.status <= 599:
        raise ValueError(f"an answer's status must be from 200 to 599, not {answer.status!r}")
    if not isinstance(answer.body, bytes) or len(answer.body) > MAX_ANSWER_BODY:
        raise ValueError(f"an answer's body must be bytes, at most {MAX_ANSWER_BODY}")
    fields = Fields([])
    for name, value in answer.headers:
        fields.add(name, value)
    return answer.status, answer.body, fields.as_list()


def new_attempt(exchange: Exchange) -> None:
    """Before a backendRef's filters: they see the request as the rule's filters left
    it, not as another attempt's did."""
    view = exchange.filter_request
    if view is None:
        exchange.filter_request = _request_view(exchange)
    else:
        view.headers = Fields(list(exchange.request.headers))


def _request_view(exchange: Exchange) -> FilterRequest:
    request = exchange.request
    return FilterRequest(
        request.method.decode("latin-1"),
        request.target.decode("latin-1"),
        request.authority.decode("latin-1"),
        exchange.conn.peer_host.decode("latin-1"),
        Fields(list(request.headers)),
    )
