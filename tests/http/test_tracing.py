"""W3C Trace Context parsing, sans-I/O: what a client's ``traceparent`` and
``tracestate`` must look like to be continued, byte by byte."""

from __future__ import annotations

import pytest

from twistgw.dataplane.http.forwarding import forwarded
from twistgw.dataplane.http.tracing import (
    MAX_TRACESTATE,
    Trace,
    parse_traceparent,
    valid_tracestate,
)

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + SPAN + b"-01"

TRACEPARENTS = [
    (VALID, (TRACE, SPAN, True)),
    (b"00-" + TRACE + b"-" + SPAN + b"-00", (TRACE, SPAN, False)),
    (b"00-" + TRACE + b"-" + SPAN + b"-03", (TRACE, SPAN, True)),  # other flags ignored
    (b"00-" + TRACE + b"-" + SPAN + b"-02", (TRACE, SPAN, False)),
    # a later version: its first 55 characters, if "-" follows
    (b"01-" + TRACE + b"-" + SPAN + b"-01", (TRACE, SPAN, True)),
    (b"cc-" + TRACE + b"-" + SPAN + b"-01-what-the-future-holds", (TRACE, SPAN, True)),
    (b"cc-" + TRACE + b"-" + SPAN + b"-01x", None),
    (b"ff-" + TRACE + b"-" + SPAN + b"-01", None),  # version ff is invalid
    (b"0g-" + TRACE + b"-" + SPAN + b"-01", None),
    (b"00-" + TRACE + b"-" + SPAN + b"-01-", None),  # version 00 has nothing after
    (b"00-" + TRACE + b"-" + SPAN + b"-01 ", None),
    (b"00-" + TRACE.upper() + b"-" + SPAN + b"-01", None),
    (b"00-" + TRACE + b"-" + SPAN.upper() + b"-01", None),
    (b"00-" + TRACE + b"-" + SPAN + b"-0A", None),
    (b"00-" + b"0" * 32 + b"-" + SPAN + b"-01", None),
    (b"00-" + TRACE + b"-" + b"0" * 16 + b"-01", None),
    (b"00-" + TRACE[:-1] + b"-" + SPAN + b"-01", None),
    (b"00-" + TRACE + b"0-" + SPAN + b"-01", None),
    (b"00_" + TRACE + b"-" + SPAN + b"-01", None),
    (b"00-" + TRACE + b"-" + SPAN + b"-1", None),
    (VALID + b"-" + b"x" * 10000, None),
    (b"", None),
    (b"\x00" * 55, None),
    (b"00-" + TRACE + b"-" + SPAN[:-1] + b"\xff-01", None),
    (b" " + VALID[:-1], None),
]


@pytest.mark.parametrize(("value", "expected"), TRACEPARENTS)
def test_traceparent(value: bytes, expected) -> None:
    assert parse_traceparent(value) == expected


TRACESTATES = [
    (b"rojo=00f067aa0ba902b7", True),
    (b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", True),
    (b"rojo=1 , ,congo=2\t", True),  # optional spaces and empty members
    (b"tenant@vendor=x", True),
    (b"a*b/c_d-e=v", True),
    (b"", True),
    (b"Rojo=1", False),  # keys are lowercase
    (b"rojo", False),
    (b"rojo=", False),
    (b"rojo=a,rojo=b", False),  # one entry per key
    (b"rojo=a=b", False),
    (b"rojo=a b ", True),  # inner spaces allowed, trailing ones stripped
    (b"rojo=\x7f", False),
    (b",".join(b"k%d=v" % i for i in range(32)), True),
    (b",".join(b"k%d=v" % i for i in range(33)), False),
    (b"k=" + b"v" * 257, False),
    (b"k=" + b"v" * 256, True),
    (b",".join(b"k%d=%s" % (i, b"v" * 40) for i in range(13)), False),  # > 512 bytes
]


@pytest.mark.parametrize(("value", "expected"), TRACESTATES)
def test_tracestate(value: bytes, expected: bool) -> None:
    assert valid_tracestate(value) is expected


def _valid_ids(trace: Trace) -> None:
    assert parse_traceparent(trace.traceparent(trace.span_id)) is not None


def test_a_valid_traceparent_continues_its_trace() -> None:
    trace = Trace(VALID, b"rojo=1", None)
    assert (trace.trace_id, trace.parent_id, trace.sampled, trace.state) == (
        TRACE,
        SPAN,
        True,
        b"rojo=1",
    )
    first, second = trace.new_attempt(), trace.new_attempt()
    assert len({first, second, trace.span_id, SPAN}) == 4  # a new span id per attempt
    assert trace.fields(first) == (
        (b"traceparent", b"00-" + TRACE + b"-" + first + b"-01"),
        (b"tracestate", b"rojo=1"),
    )


def test_an_invalid_traceparent_starts_a_new_trace_without_its_tracestate() -> None:
    trace = Trace(VALID.upper(), b"rojo=1", None)
    assert trace.trace_id != TRACE.upper() and trace.parent_id is None
    assert not trace.sampled and trace.state is None
    _valid_ids(trace)
    assert trace.fields(trace.new_attempt())[0][1].endswith(b"-00")
    assert Trace(None, None, None).trace_id != trace.trace_id


def test_sampling_by_trace_id_when_spans_are_exported() -> None:
    low = b"00-" + b"f" * 16 + b"0" * 15 + b"1-" + SPAN + b"-00"
    high = b"00-" + b"0" * 16 + b"f" * 16 + b"-" + SPAN + b"-01"
    half = 1 << 63
    assert Trace(low, None, half).sampled and Trace(low, None, half).spans == []
    assert not Trace(high, None, half).sampled and Trace(high, None, half).spans is None
    assert not Trace(VALID, None, 0).sampled  # ratio 0: the client's flag is overridden
    assert Trace(None, None, 1 << 64).sampled


def test_forwarding_takes_the_clients_trace_fields_out() -> None:
    headers = [
        (b"traceparent", VALID),
        (b"tracestate", b"a=1"),
        (b"accept", b"*/*"),
        (b"tracestate", b"b=2"),
    ]
    kept, _, traceparent, tracestate = forwarded(headers, b"10.0.0.1", b"http")
    assert (traceparent, tracestate) == (VALID, b"a=1,b=2")
    assert not any(name.startswith(b"trace") for name, _ in kept)
    twice = forwarded(headers + [(b"traceparent", VALID)], b"10.0.0.1", b"http")
    assert twice[2] == b""  # two traceparent fields: invalid, a new trace
    many = [(b"tracestate", b"k=" + b"v" * 200)] * 50
    assert len(forwarded(many, b"10.0.0.1", b"http")[3]) < 2 * MAX_TRACESTATE
