"""The access log: one structured ``twisted.logger`` event per request (namespace
``twistgw.access``), and an observer that writes those events as JSON lines.

The events go to the access log's own observer (``route_to``), not through the global
publisher with every other observer of the process; lines are buffered and flushed
once a second (and at exit), so logging costs no write call per request; the file is
opened for appending, so workers can share it."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING

from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange

NAMESPACE = "twistgw.access"
#: The fields of a record, in the order they are written.
FIELDS = (
    "time",
    "client",
    "method",
    "authority",
    "path",
    "protocol",
    "status",
    "grpc_status",
    "bytes_in",
    "bytes_out",
    "duration",
    "upstream_time",
    "attempts",
    "listener",
    "route",
    "rule",
    "backend",
    "endpoint",
    "user_agent",
    "request_id",
    "trace_id",
    "span_id",
)
FORMAT = "{method} {authority}{path} {protocol} {status}"

log = Logger(namespace=NAMESPACE)


def route_to(observer) -> None:
    """Send access events to ``observer`` (by default they go to the global one)."""
    log.observer = observer


class _Clock:
    """RFC 3339 times, the formatting of the date and time done once a second."""

    second = -1
    prefix = ""

    def format(self, now: float) -> str:
        second = int(now)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int(now * 1000) % 1000:03d}Z"


_clock = _Clock()


def record(exchange: Exchange, now: float) -> dict:
    """The access-log fields of a finished exchange."""
    request = exchange.request
    endpoint = exchange.endpoint
    trace = exchange.trace
    user_agent = None
    for name, value in request.headers:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    return {
        "time": _clock.format(now),
        "client": exchange.conn.peer_host.decode(),
        "method": request.method.decode("latin-1"),
        "authority": request.authority.decode("latin-1"),
        "path": request.target.decode("latin-1"),
        "protocol": request.protocol,
        "status": exchange.code,
        "grpc_status": int(exchange.grpc_status) if exchange.grpc_status else None,
        "bytes_in": exchange.received,
        "bytes_out": exchange.sent,
        "duration": round(now - exchange.started_at, 6),
        "upstream_time": round(now - exchange.upstream_at, 6) if exchange.upstream_at else None,
        "attempts": _attempts(exchange),
        "listener": exchange.listener.name if exchange.listener is not None else None,
        "route": exchange.route.name if exchange.route is not None else None,
        "rule": exchange.route.rule if exchange.route is not None else None,
        "backend": exchange.backend.name if exchange.backend is not None else None,
        "endpoint": f"{endpoint.address}:{endpoint.port}" if endpoint is not None else None,
        "user_agent": user_agent,
        "request_id": exchange.request_id.decode("latin-1") or None,
        "trace_id": trace.trace_id.decode() if trace is not None else None,
        "span_id": trace.span_id.decode() if trace is not None else None,
    }


def _attempts(exchange: Exchange) -> int:
    """Tries at a backend: counted under a rule's timeouts or retries, else 1 once an
    endpoint was chosen (0: answered by the gateway before)."""
    guard = exchange.guard
    if guard is not None:
        return guard.attempts
    return 1 if exchange.endpoint is not None else 0


_encode = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


def emit(exchange: Exchange, now: float) -> None:
    """Log one finished exchange (the exchange calls this when access logging is on):
    the event ``log.info`` would make, made here, as ``Logger.emit`` checking its level
    and looking for a trace cost a third of what an access-log line costs."""
    event = record(exchange, now)
    event.update(
        log_logger=log,
        log_level=LogLevel.info,
        log_namespace=NAMESPACE,
        log_source=None,
        log_format=FORMAT,
        log_time=now,
    )
    log.observer(event)


class JSONLinesObserver:
    """Writes access events to ``path`` ("-": standard output) as JSON lines."""

    def __init__(self, path: str, clock, flush_interval: float = 1.0) -> None:
        self.stream: IO[str] = (
            sys.stdout if path == "-" else open(path, "a", buffering=1 << 16)  # noqa: SIM115
        )
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = clock
        self._flusher.start(flush_interval, now=False)

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") != NAMESPACE:
            return
        self.stream.write(_encode({name: event.get(name) for name in FIELDS}) + "\n")

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if self._flusher.running:
            self._flusher.stop()
        self.flush()
