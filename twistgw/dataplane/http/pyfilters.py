"""Filter plugins at request time: each worker's installed and allowed plugins, the
filters they make for the PythonFilters of the current table, and the calls into them,
guarded so that what a plugin raises answers that request 500 and is counted, never
more."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.extensions.filters import Answer, Fields, FilterRequest
from twistgw.routing import ir

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange
    from twistgw.dataplane.http.messages import Response

log = Logger()
#: The longest body a filter's Answer may have.
MAX_ANSWER_BODY = 1024 * 1024


class FilterRegistry:
    """A worker's filter plugins (``plugins``: the allowed installed ones by name) and
    the filters made from the current table's PythonFilters (dropped with each table:
    a filter lives as long as the configuration that made it)."""

    def __init__(self, plugins: dict[str, Any], metrics) -> None:
        self.plugins = plugins
        self.metrics = metrics
        self.made: dict[tuple[str, str], Any] = {}

    def new_table(self, table: ir.RoutingTable) -> None:
        """Keep the filters the new table still uses (their state goes on), drop the
        others."""
        used = {
            (spec.plugin, spec.config)
            for route in table.http_routes()
            for spec in route.filters.python
        }
        self.made = {key: made for key, made in self.made.items() if key in used}

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
    """A rule's PythonFilters, in order."""

    __slots__ = ("specs",)

    def __init__(self, specs: Iterable[ir.PythonFilter]) -> None:
        self.specs = tuple(specs)

    def request_checks(self) -> list:
        """One check per filter for the exchange's chain of checks (see policies.py):
        True to go on, False having answered, or a Deferred of either."""
        return [_RequestCheck(spec) for spec in self.specs]

    def on_response(self, exchange: Exchange, response: Response) -> bool:
        """Let each filter see the response head (sync); False: one failed (answered
        500 here)."""
        registry = exchange.conn.factory.guards.filters
        fields = None  # (made when a filter has on_response: most have not)
        for spec in self.specs:
            try:
                hook = getattr(registry.filter_for(spec), "on_response", None)
                if hook is not None:
                    if fields is None:
                        fields = Fields(list(response.headers))
                    hook(exchange.filter_request, _ResponseView(response, fields))
            except Exception:
                registry.failed(spec.plugin, "on_response", Failure())
                exchange.respond_local(500, b"a filter of this route failed\n")
                return False
        if fields is not None:
            response.headers = fields.as_list()
        return True


class _ResponseView:
    """What a filter sees of a response head: its status and its fields."""

    __slots__ = ("status", "headers")

    def __init__(self, response: Response, fields: Fields) -> None:
        self.status = response.status
        self.headers = fields


class _RequestCheck:
    __slots__ = ("spec",)

    def __init__(self, spec: ir.PythonFilter) -> None:
        self.spec = spec

    def __call__(self, exchange: Exchange) -> bool | Deferred:
        spec = self.spec
        if spec.problem is not None:
            log.warn("{route}: {problem}", route=exchange.route.name, problem=spec.problem)
            exchange.respond_local(500, b"a filter of this route cannot be used\n")
            return False
        registry = exchange.conn.factory.guards.filters
        request = exchange.filter_request
        if request is None:
            request = exchange.filter_request = _request_view(exchange)
        try:
            made = registry.filter_for(spec)
        except Exception:
            registry.failed(spec.plugin, "make", Failure())
            exchange.respond_local(500, b"a filter of this route failed\n")
            return False
        try:
            outcome = made.on_request(request)
        except Exception:
            return self._settled(exchange, registry, Failure())
        if isinstance(outcome, Deferred):
            return outcome.addBoth(lambda result: self._settled(exchange, registry, result))
        return self._settled(exchange, registry, outcome)

    def _settled(self, exchange: Exchange, registry: FilterRegistry, result) -> bool:
        if exchange.finished:
            return False
        if isinstance(result, Failure):
            registry.failed(self.spec.plugin, "on_request", result)
            exchange.respond_local(500, b"a filter of this route failed\n")
            return False
        exchange.request.headers = exchange.filter_request.headers.as_list()
        if result is None:
            return True
        try:
            if not isinstance(result, Answer):
                raise TypeError(f"on_request returned {type(result).__name__}: None or an Answer")
            answer = _answer(result)
        except Exception:
            registry.failed(self.spec.plugin, "on_request", Failure())
            exchange.respond_local(500, b"a filter of this route failed\n")
            return False
        exchange.respond_local(*answer)
        return False


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


def _request_view(exchange: Exchange) -> FilterRequest:
    request = exchange.request
    return FilterRequest(
        request.method.decode("latin-1"),
        request.target.decode("latin-1"),
        request.authority.decode("latin-1"),
        exchange.conn.peer_host.decode("latin-1"),
        Fields(list(request.headers)),
    )
