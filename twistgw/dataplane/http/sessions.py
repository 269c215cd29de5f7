"""Session persistence (GEP-1619) at request time: a rule's session cookie or header
names the endpoint that answered the request which started the session, and later
requests carrying it go to that endpoint while it is still one of the rule's.

The value is opaque to the client and checked, never trusted:

- what it holds (33 bytes, sent as 44 characters of unpadded base64url): a version
  byte, the session's start (milliseconds since the epoch, 8 bytes, big-endian), the
  endpoint's id (8 bytes) and a tag (16 bytes);
- the endpoint's id is a keyed hash (HMAC-SHA256) of the backend's name and the
  endpoint's address and port: it does not show the address, and the data plane
  never reads an address out of it. It is only looked up among the ids of the rule's
  own endpoints, so a value can name no other place to connect to;
- the tag is an HMAC-SHA256 of the rest and of the rule's scope: a client cannot
  change the start (to outlive absoluteTimeout) or the endpoint, nor carry a value
  from one rule to another (rules never share sessions);
- a value of any other length is not decoded; at most ``MAX_CANDIDATES`` values of
  the session's name are looked at per request, so a request costs at most that many
  HMACs whatever it carries.

The key comes from the DataPlaneSettings' ``session_key`` (the supervisor's random
one, or the operator's ``--session-key-file``), the same in every worker; sessions
outlive neither a change of key nor, with the random key, a restart of the gateway.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import os
from collections.abc import Iterable, Sequence

from twistgw.routing import ir

#: The first byte of every value (another layout would get another).
VERSION = 1
ENDPOINT_ID_LENGTH = 8
TAG_LENGTH = 16
#: Bytes of a value before the tag: version, start, endpoint id.
BODY_LENGTH = 1 + 8 + ENDPOINT_ID_LENGTH
#: Characters of a value on the wire (unpadded base64url of the 33 bytes).
VALUE_LENGTH = 44
#: Values of the session's cookie (or header) looked at in one request.
MAX_CANDIDATES = 4
#: Seconds a session's start may lie in the future (clocks of gateway replicas that
#: share a key disagree a little); later than that, the value is not honoured.
CLOCK_SLACK = 60.0

Fields = Sequence[tuple[bytes, bytes]]


class SessionKeys:
    """The keys of a gateway's sessions, derived from one secret: one for endpoint
    ids, one for value tags."""

    __slots__ = ("_ids", "_tags")

    _process: SessionKeys | None = None

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a session secret needs at least 16 bytes")
        self._ids = hmac.digest(secret, b"twistgw session endpoint id", "sha256")
        self._tags = hmac.digest(secret, b"twistgw session value tag", "sha256")

    @classmethod
    def from_hex(cls, text: str) -> SessionKeys:
        """The keys of a secret given as hex (DataPlaneSettings.session_key); a random
        secret when ``text`` is empty."""
        return cls(bytes.fromhex(text)) if text else cls.random()

    @classmethod
    def random(cls) -> SessionKeys:
        return cls(os.urandom(32))

    @classmethod
    def for_process(cls) -> SessionKeys:
        """One random key for this process, for routers built without one (tests)."""
        if cls._process is None:
            cls._process = cls.random()
        return cls._process

    def endpoint_id(self, backend: str, endpoint: ir.Endpoint) -> bytes:
        data = f"{backend}\0{endpoint.address}\0{endpoint.port}".encode()
        return hmac.digest(self._ids, data, "sha256")[:ENDPOINT_ID_LENGTH]

    def tag(self, scope: bytes, body: bytes) -> bytes:
        return hmac.digest(self._tags, scope + body, "sha256")[:TAG_LENGTH]


class CompiledSession:
    """A rule's session persistence, with the ids of the rule's endpoints: those of
    every backend that is not invalid, weight 0 included (a session outlives its
    backend's weight going to 0, as GEP-1619 asks)."""

    __slots__ = (
        "keys",
        "scope",
        "timeout",
        "cookie",
        "name",
        "attributes",
        "members",
        "ids",
    )

    def __init__(self, spec: ir.SessionPersistence, backends: Iterable, keys: SessionKeys) -> None:
        self.keys = keys
        self.scope = spec.scope.encode() + b"\0"
        self.timeout = spec.absolute_timeout
        self.cookie = spec.type == "Cookie"
        name = spec.name.encode("ascii")
        self.name = name if self.cookie else name.lower()
        attributes = b"; Path=" + spec.path.encode("ascii")
        if spec.permanent and spec.absolute_timeout is not None:
            attributes += b"; Max-Age=%d" % math.ceil(spec.absolute_timeout)
        self.attributes = attributes + b"; HttpOnly; SameSite=Lax"
        #: endpoint id -> (backend, endpoint); (backend, endpoint) -> endpoint id
        self.members: dict[bytes, tuple] = {}
        self.ids: dict[tuple, bytes] = {}
        for backend in backends:
            if backend.invalid:
                continue
            for endpoint in backend.endpoints:
                found = keys.endpoint_id(backend.name, endpoint)
                self.members.setdefault(found, (backend, endpoint))
                self.ids[(backend, endpoint)] = found

    # -- requests

    def pinned(self, headers: Fields, now: float) -> tuple | None:
        """(endpoint id, backend, endpoint) of the first valid value the request
        carries for this session; None when it carries none: no value, one that is
        forged or damaged, expired, or whose endpoint is no longer the rule's."""
        for value in self.values(headers):
            found = self.open(value, now)
            if found is not None:
                return found
        return None

    def values(self, headers: Fields) -> list[bytes]:
        """The first MAX_CANDIDATES values of the session's cookie or header."""
        found: list[bytes] = []
        if not self.cookie:
            for name, value in headers:
                if name == self.name:
                    found.append(value)
                    if len(found) == MAX_CANDIDATES:
                        break
            return found
        prefix = self.name + b"="
        for name, value in headers:
            if name != b"cookie" or prefix not in value:
                continue
            for pair in value.split(b";"):
                pair = pair.strip()
                if pair.startswith(prefix):
                    found.append(pair[len(prefix) :])
                    if len(found) == MAX_CANDIDATES:
                        return found
        return found

    def open(self, value: bytes, now: float) -> tuple | None:
        """(endpoint id, backend, endpoint) that a valid ``value`` names, else None."""
        if len(value) != VALUE_LENGTH:
            return None
        try:
            raw = base64.b64decode(value, altchars=b"-_", validate=True)
        except binascii.Error:
            return None
        if len(raw) != BODY_LENGTH + TAG_LENGTH or raw[0] != VERSION:
            return None
        body = raw[:BODY_LENGTH]
        if not hmac.compare_digest(raw[BODY_LENGTH:], self.keys.tag(self.scope, body)):
            return None
        age = now - int.from_bytes(body[1:9], "big") / 1000.0
        if age < -CLOCK_SLACK or (self.timeout is not None and age >= self.timeout):
            return None
        endpoint_id = body[9:]
        member = self.members.get(endpoint_id)
        if member is None:
            return None
        return (endpoint_id, *member)

    # -- responses

    def seal(self, endpoint_id: bytes, now: float) -> bytes:
        """A value naming ``endpoint_id`` for a session starting at ``now``."""
        body = bytes((VERSION,)) + int(now * 1000).to_bytes(8, "big") + endpoint_id
        raw = body + self.keys.tag(self.scope, body)
        return base64.urlsafe_b64encode(raw)

    def field(
        self, backend, endpoint: ir.Endpoint, held: bytes | None, now: float, secure: bool
    ) -> tuple[bytes, bytes] | None:
        """The response field starting a session with ``endpoint`` of ``backend``;
        None when the client ``held`` a valid value for it already (or it is no
        endpoint of the rule's)."""
        endpoint_id = self.ids.get((backend, endpoint))
        if endpoint_id is None or endpoint_id == held:
            return None
        value = self.seal(endpoint_id, now)
        if not self.cookie:
            return (self.name, value)
        cookie = self.name + b"=" + value + self.attributes
        return (b"set-cookie", cookie + b"; Secure" if secure else cookie)

    def respond(
        self,
        headers: Fields,
        backend,
        endpoint: ir.Endpoint,
        held: bytes | None,
        now: float,
        secure: bool,
    ) -> Fields:
        """``headers`` with the field starting a session, if one is to start: a
        Set-Cookie added to the backend's, or the session header in place of any
        the backend sent."""
        field = self.field(backend, endpoint, held, now, secure)
        if field is None:
            return headers
        if self.cookie:
            return [*headers, field]
        name = self.name
        return [h for h in headers if h[0].lower() != name] + [field]
