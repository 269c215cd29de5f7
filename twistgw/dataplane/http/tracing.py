"""W3C Trace Context (https://www.w3.org/TR/trace-context/) for proxied requests, sans-I/O:
the client's ``traceparent`` and ``tracestate`` checked (they come from untrusted
clients), a trace id made when none valid arrived, and a new span id per upstream
attempt in the ``traceparent`` the backend gets.

A request is one span (the request span, a child of the client's span if it sent one)
and each attempt at a backend one of its children; ``spans`` holds the attempts' data
only when the worker exports spans and the trace is sampled (``otlp.py``).
"""

from __future__ import annotations

import re
from binascii import b2a_hex
from random import getrandbits

#: version 00: version-trace_id-parent_id-flags, lowercase hex only.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
#: Characters of a ``tracestate`` kept (the spec asks for at least 512 propagated),
#: and its list members (the spec's maximum).
MAX_TRACESTATE = 512
MAX_TRACESTATE_MEMBERS = 32
_MEMBER = re.compile(
    rb"(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})"
    rb"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a valid ``traceparent``, else None.

    Version 00 is exactly 55 characters; a later version is read by its first 55 if
    the next one is "-" (as the spec asks); version ff, uppercase hex, all-zero ids,
    other lengths and anything else are refused."""
    if len(value) != 55 and (len(value) < 56 or value[55:56] != b"-"):
        return None
    match = _TRACEPARENT.fullmatch(value, 0, 55)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == b"ff" or (version == b"00" and len(value) != 55):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, int(flags, 16) & 1 == 1


def valid_tracestate(value: bytes) -> bool:
    """Whether ``value`` (the ``tracestate`` fields joined by ",") is a valid list of at
    most ``MAX_TRACESTATE_MEMBERS`` members with distinct keys, ``MAX_TRACESTATE``
    characters in all."""
    if len(value) > MAX_TRACESTATE:
        return False
    keys = set()
    count = 0
    for member in value.split(b","):
        member = member.strip(b" \t")
        if not member:
            continue  # (empty members are allowed)
        count += 1
        if count > MAX_TRACESTATE_MEMBERS or _MEMBER.fullmatch(member) is None:
            return False
        keys.add(member.partition(b"=")[0])
    return len(keys) == count


def new_span_id() -> bytes:
    """16 lowercase hex digits, not all zero."""
    span_id = b2a_hex(getrandbits(64).to_bytes(8))
    return span_id if span_id != _ZERO_SPAN else b"0000000000000001"


class AttemptSpan:
    """One attempt at a backend, as its span will say: its id, when it started and
    ended (0: not yet), the response status (0: none), the backend and endpoint, and
    why it failed (None: it did not)."""

    __slots__ = ("span_id", "start", "end", "status", "backend", "endpoint", "error")

    def __init__(self, span_id: bytes, start: float, backend: str, endpoint: object) -> None:
        self.span_id = span_id
        self.start = start
        self.end = 0.0
        self.status = 0
        self.backend = backend
        self.endpoint = endpoint
        self.error: str | None = None


class Trace:
    """The trace of one request: its ``trace_id``, the request span's ``span_id``,
    the client's span (``parent_id``, None when the trace starts here), whether it is
    ``sampled``, the client's ``tracestate`` if valid, and the attempts' ``spans``
    when recorded."""

    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "state", "spans", "next_id")

    def __init__(
        self, traceparent: bytes | None, tracestate: bytes | None, sample_below: int | None
    ) -> None:
        """``sample_below``: when the worker exports spans, the bound under which the
        trace id's last 64 bits make a trace sampled (OpenTelemetry's TraceIdRatioBased
        sampler, so every hop sampling by ratio agrees); None: nothing is recorded and
        the client's sampled flag is passed on."""
        parsed = parse_traceparent(traceparent) if traceparent is not None else None
        ids = b2a_hex(getrandbits(256).to_bytes(32))  # (one draw for the ids we may need)
        self.span_id = ids[32:48]
        self.next_id: bytes | None = ids[48:]
        if _ZERO_SPAN in (self.span_id, self.next_id):  # (one time in 2**63)
            self.span_id, self.next_id = new_span_id(), None
        if parsed is None:
            self.trace_id = ids[:32] if ids[:32] != _ZERO_TRACE else b"%032x" % 1
            self.parent_id: bytes | None = None
            self.sampled = False
            self.state: bytes | None = None
        else:
            self.trace_id, self.parent_id, self.sampled = parsed
            valid = tracestate is not None and valid_tracestate(tracestate)
            self.state = tracestate if valid else None
        self.spans: list[AttemptSpan] | None = None
        if sample_below is not None:
            self.sampled = int(self.trace_id[16:], 16) < sample_below
            if self.sampled:
                self.spans = []

    def new_attempt(self) -> bytes:
        """A span id for an attempt (the first one drawn with the trace's ids)."""
        span_id = self.next_id
        if span_id is None:
            return new_span_id()
        self.next_id = None
        return span_id

    def traceparent(self, span_id: bytes) -> bytes:
        """The ``traceparent`` naming ``span_id`` (an attempt's) as the parent."""
        return b"00-" + self.trace_id + b"-" + span_id + (b"-01" if self.sampled else b"-00")

    def fields(self, span_id: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """The trace context fields a backend gets from the attempt ``span_id``."""
        if self.state is None:
            return ((b"traceparent", self.traceparent(span_id)),)
        return ((b"traceparent", self.traceparent(span_id)), (b"tracestate", self.state))
