"""Tracing through a real gateway process: W3C ``traceparent`` reaching the backend (the
client's trace continued, or a new one), spans exported to a local OTLP/HTTP receiver,
and the trace ids in the access log."""

from __future__ import annotations

import gzip
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.gateway import GatewayProcess, access_record, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import RawBackend
from twistgw.dataplane.http.tracing import parse_traceparent

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces receiver on loopback: the spans it was sent, as dicts."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def found(self, **wanted) -> dict | None:
        with self.lock:
            for span in self.spans:
                if all(span.get(key) == value for key, value in wanted.items()):
                    return span
        return None


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        export = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {
                        a.key: getattr(a.value, a.value.WhichOneof("value"))
                        for a in span.attributes
                    }
                    spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            **attributes,
                        }
                    )
        with self.server.lock:
            self.server.spans += spans
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


SEEN_PATHS: set[bytes] = set()


def _slow_the_first_time(conn) -> None:
    """Answers a path the second time it is asked; the first time, only after a second
    (past the rule's backendRequest timeout)."""
    while (request := conn.read_request()) is not None:
        path = request.split(b" ", 2)[1]
        if path not in SEEN_PATHS:
            SEEN_PATHS.add(path)
            time.sleep(1)
            return
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[GatewayProcess, RawBackend, Receiver, str]]:
    receiver = Receiver()
    log_path = os.path.join(tempfile.mkdtemp(prefix="twistgw-access-"), "access.log")
    gateway = GatewayProcess(
        (
            "--workers",
            "1",
            "--otlp-endpoint",
            receiver.url,
            "--trace-sampling-ratio",
            "1",
            "--access-log",
            log_path,
        )
    ).start()
    server, slow_once = RawBackend(), RawBackend(_slow_the_first_time)
    documents = [gateway_class(), gateway_manifest(), *service("traced", [server.address])]
    documents += service("slow-once", [slow_once.address])
    rules = [
        {"backendRefs": [backend("traced")]},
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/retried"}}],
            "backendRefs": [backend("slow-once")],
            "timeouts": {"backendRequest": "300ms"},
            "retry": {"attempts": 1, "backoff": "10ms"},
        },
    ]
    documents.append(http_route("traced-route", rules, hostnames=["example.com"]))
    gateway.write("traced.yaml", documents)
    wait_until(lambda: gateway.request("/ready")[0] == 200, what="the route to be served")
    yield gateway, server, receiver, log_path
    gateway.stop()
    server.close()
    slow_once.close()
    receiver.shutdown()
    receiver.server_close()


def _sent_traceparent(server: RawBackend, path: bytes) -> tuple[str, str, bool]:
    """(trace id, parent id, sampled) of the traceparent the backend got for ``path``."""
    with server.lock:
        request = next(r for r in reversed(server.requests) if r.split(b" ")[1] == path)
    fields = [line.split(b":", 1) for line in request.split(b"\r\n")[1:] if b":" in line]
    values = [value.strip() for name, value in fields if name.lower() == b"traceparent"]
    assert len(values) == 1, request
    parsed = parse_traceparent(values[0])
    assert parsed is not None, values[0]
    return parsed[0].decode(), parsed[1].decode(), parsed[2]


def test_traceparent_reaches_the_backend_and_spans_are_exported(traced) -> None:
    gateway, server, receiver, log_path = traced
    client = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"
    code, _, _ = gateway.request(
        "/continued", headers={"traceparent": client, "tracestate": "rojo=1"}
    )
    assert code == 200
    trace_id, attempt_id, sampled = _sent_traceparent(server, b"/continued")
    assert trace_id == CLIENT_TRACE and attempt_id != CLIENT_SPAN
    assert sampled  # (sampled by the gateway's ratio, 1)
    with server.lock:
        assert b"\r\ntracestate: rojo=1\r\n" in server.requests[-1]

    assert gateway.request("/new")[0] == 200
    new_trace, _, _ = _sent_traceparent(server, b"/new")
    assert new_trace != CLIENT_TRACE

    bad = f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01"
    assert gateway.request("/malformed", headers={"traceparent": bad})[0] == 200
    other, _, _ = _sent_traceparent(server, b"/malformed")
    assert other not in (CLIENT_TRACE, CLIENT_TRACE.upper(), new_trace)

    request_span = wait_until(
        lambda: receiver.found(trace_id=CLIENT_TRACE, parent_span_id=CLIENT_SPAN),
        what="the request's span at the OTLP receiver",
    )
    assert request_span["twistgw.route"] == "default/traced-route"
    assert request_span["name"] == "GET default/traced-route"
    assert request_span["http.request.method"] == "GET"
    assert request_span["url.path"] == "/continued"
    assert request_span["http.response.status_code"] == 200
    assert request_span["twistgw.gateway"] == "default/gw"
    assert request_span["twistgw.listener"].startswith("default/gw/")
    assert request_span["twistgw.backend"] == "default/traced:8080"
    assert request_span["end"] >= request_span["start"] > 0
    attempt = wait_until(lambda: receiver.found(span_id=attempt_id), what="the attempt's span")
    assert attempt["trace_id"] == CLIENT_TRACE
    assert attempt["parent_span_id"] == request_span["span_id"]
    assert attempt["twistgw.backend"] == "default/traced:8080"
    assert attempt["http.response.status_code"] == 200
    assert request_span["start"] <= attempt["start"] <= attempt["end"] <= request_span["end"]
    assert wait_until(lambda: receiver.found(trace_id=new_trace, parent_span_id=""))

    record = wait_until(lambda: access_record(log_path, "/continued"), what="the access-log record")
    assert record["trace_id"] == CLIENT_TRACE
    assert record["span_id"] == request_span["span_id"]


def test_requests_answered_by_the_gateway_have_spans_too(traced) -> None:
    gateway, _, receiver, _ = traced
    client = f"00-{CLIENT_TRACE[::-1]}-{CLIENT_SPAN}-01"
    assert gateway.request("/", host="unknown.example", headers={"traceparent": client})[0] == 404
    span = wait_until(lambda: receiver.found(trace_id=CLIENT_TRACE[::-1]), what="the 404's span")
    assert span["http.response.status_code"] == 404 and "twistgw.route" not in span


def test_propagation_without_export() -> None:
    """--trace-propagation alone (no export): the client's trace goes on."""
    gateway = GatewayProcess(("--workers", "1", "--trace-propagation")).start()
    server = RawBackend()
    try:
        documents = [gateway_class(), gateway_manifest(), *service("plain", [server.address])]
        documents.append(http_route("plain", [{"backendRefs": [backend("plain")]}]))
        gateway.write("plain.yaml", documents)
        wait_until(lambda: gateway.request("/ready")[0] == 200, what="the route to be served")
        client = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
        assert gateway.request("/kept", headers={"traceparent": client})[0] == 200
        trace_id, parent_id, sampled = _sent_traceparent(server, b"/kept")
        assert (trace_id, sampled) == (CLIENT_TRACE, True) and parent_id != CLIENT_SPAN
    finally:
        gateway.stop()
        server.close()


def test_a_retried_timeout_is_a_failed_attempt_span(traced) -> None:
    gateway, _, receiver, _ = traced
    trace = "ab" * 16
    headers = {"traceparent": f"00-{trace}-{CLIENT_SPAN}-01"}
    assert gateway.request("/retried/once", headers=headers)[0] == 200

    def attempts() -> list[dict]:
        with receiver.lock:
            found = [s for s in receiver.spans if s["trace_id"] == trace and s["kind"] == 3]
        return sorted(found, key=lambda span: span["start"]) if len(found) == 2 else []

    first, second = wait_until(attempts, what="both attempts exported")
    assert first.get("error.type") == "timeout" and "http.response.status_code" not in first
    assert second.get("http.response.status_code") == 200 and "error.type" not in second
