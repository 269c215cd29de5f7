"""The fields a proxy adds to a forwarded request: ``X-Forwarded-For``,
``X-Forwarded-Proto`` and ``X-Request-Id`` (kept when the client sent a valid one);
the client's ``traceparent`` and ``tracestate`` are taken out, for the exchange to
replace (``tracing.py``)."""

from __future__ import annotations

import itertools
import re
import uuid
from random import getrandbits

from twistgw.dataplane.http.messages import Headers
from twistgw.dataplane.http.tracing import MAX_TRACESTATE

#: What a client's request id may look like to be kept (else one is made).
VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,200}")
FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"traceparent", b"tracestate"}
)


def _uuid_prefix() -> bytes:
    """The first 80 bits of a random version-4 UUID, as its first four groups."""
    h = str(uuid.uuid4()).encode()
    return h[:24]


_PREFIX = _uuid_prefix()
_sequence = itertools.count(getrandbits(40))


def new_request_id() -> bytes:
    """A UUID-shaped id: a random prefix drawn once per process and a 48-bit counter.
    Unique across workers and restarts like a random UUID, at a tenth of
    ``uuid.uuid4``'s cost (no system call per request)."""
    return b"%s%012x" % (_PREFIX, next(_sequence) & 0xFFFFFFFFFFFF)


def forwarded(
    headers: Headers, client: bytes, scheme: bytes, request_id: bytes | None = None
) -> tuple[Headers, bytes, bytes | None, bytes | None]:
    """``headers`` with the forwarding fields set for ``client``, the request id (the
    given one: a retry keeps its request's; else the client's first valid one, else a
    new one), and the client's ``traceparent`` (b"" if it sent several: invalid) and
    ``tracestate`` (its fields joined, as far as to be past ``MAX_TRACESTATE``: too
    long), taken out."""
    forwarded_for = None
    traceparent = None
    tracestate = None
    kept = []
    for field in headers:
        name = field[0]
        if name not in FORWARDING:
            kept.append(field)
        elif name == b"x-forwarded-for":
            value = field[1]
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif name == b"x-request-id":
            if request_id is None and VALID_REQUEST_ID.fullmatch(field[1]):
                request_id = field[1]  # the first valid x-request-id
        elif name == b"traceparent":
            traceparent = field[1] if traceparent is None else b""
        elif name == b"tracestate" and (tracestate is None or len(tracestate) <= MAX_TRACESTATE):
            tracestate = field[1] if tracestate is None else tracestate + b"," + field[1]
    if request_id is None:
        request_id = new_request_id()
    kept += (
        (b"x-forwarded-for", forwarded_for + b", " + client if forwarded_for else client),
        (b"x-forwarded-proto", scheme),
        (b"x-request-id", request_id),
    )
    return kept, request_id, traceparent, tracestate
