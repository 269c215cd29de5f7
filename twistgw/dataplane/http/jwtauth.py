"""JWT authentication (a SecurityPolicy's ``jwt``): a bearer token that one of the
policy's providers verifies, by signature (asymmetric algorithms only: a key set never
doubles as an HMAC secret) and by claims (``exp``, ``nbf``, ``iss``, ``aud``).

A provider's keys come from a Secret (in the table) or from its ``jwks`` URI, fetched
by each worker without blocking the reactor, kept for ``JWKS_REFRESH`` seconds and,
when a refresh fails, kept as they were (``JWKS_RETRY`` seconds until the next try).
Verified tokens are remembered until they expire (at most ``MAX_REMEMBERED`` per
policy), so a client does not pay a signature check on every request."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import treq
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from twistgw.dataplane.http.messages import Headers
from twistgw.routing import ir

log = Logger()

#: The signature algorithms accepted (no "none", no HMAC).
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
#: The longest token read.
MAX_TOKEN = 8192
#: Verified tokens remembered per policy; how long one without ``exp`` is.
MAX_REMEMBERED = 4096
REMEMBER_WITHOUT_EXPIRY = 60.0
#: Seconds a refused token is refused again without a check (one not valid yet may be
#: soon).
REMEMBER_REFUSED = 30.0
#: Seconds of clock skew allowed on ``exp`` and ``nbf``.
LEEWAY = 30
#: A claim's value put in a request field: at most this long, printable.
MAX_CLAIM_FIELD = 1024
#: Remote key sets: seconds kept, seconds between failed tries, bytes and time a fetch
#: may take.
JWKS_REFRESH = 300.0
JWKS_RETRY = 10.0
MAX_JWKS_BYTES = 512 * 1024
JWKS_TIMEOUT = 10.0
#: Requests that may wait for a key set's first fetch, per URI and worker.
MAX_WAITERS = 1024


class KeySets:
    """A worker's remote key sets, by URI: fetched when first wanted, refreshed."""

    def __init__(self, clock, fetch: Callable[[str], Deferred] | None = None) -> None:
        self.clock = clock
        self.fetch = fetch or (lambda uri: fetch_key_set(uri, clock))
        #: uri -> [keys or None, when to fetch next, waiters (a fetch is running)]
        self.entries: dict[str, list] = {}

    def get(self, uri: str) -> KeySet | Deferred | None:
        """The key set at ``uri``: now, a Deferred for the first fetch's outcome, or None
        (none could be fetched yet, or ``MAX_WAITERS`` requests wait for it already)."""
        entry = self.entries.get(uri)
        now = self.clock.seconds()
        if entry is None:
            entry = self.entries[uri] = [None, 0.0, None]
        if entry[2] is None and now >= entry[1]:
            entry[2] = []
            maybeDeferred(self.fetch, uri).addCallbacks(  # (a URL refused at once, too)
                lambda found: self._fetched(uri, found), lambda f: self._fetched(uri, f)
            )
        keys, _, waiters = entry  # (after a fetch that may have ended at once)
        if keys is not None:
            return keys
        if waiters is None or len(waiters) >= MAX_WAITERS:
            return None
        waiter: Deferred = Deferred()
        waiters.append(waiter)
        return waiter

    def _fetched(self, uri: str, found: Any) -> None:
        entry = self.entries[uri]
        waiters, entry[2] = entry[2] or [], None
        if isinstance(found, KeySet):
            entry[0], entry[1] = found, self.clock.seconds() + JWKS_REFRESH
        else:
            reason = found.getErrorMessage() if hasattr(found, "getErrorMessage") else found
            log.warn("JWKS {uri} could not be fetched: {reason}", uri=uri, reason=reason)
            entry[1] = self.clock.seconds() + JWKS_RETRY
        for waiter in waiters:
            waiter.callback(entry[0])


def fetch_key_set(uri: str, reactor) -> Deferred:
    """GET ``uri`` and parse a JSON Web Key Set from it (bounded in bytes and time)."""
    received: list[bytes] = []

    def collect(data: bytes) -> None:
        received.append(data)
        if sum(map(len, received)) > MAX_JWKS_BYTES:
            raise ValueError(f"more than {MAX_JWKS_BYTES} bytes")

    def read(response) -> Deferred:
        if response.code != 200:
            raise ValueError(f"answered {response.code}")
        return treq.collect(response, collect)

    def parse(_) -> KeySet:
        return KeySet.import_key_set(json.loads(b"".join(received)))

    fetched = treq.get(uri, timeout=JWKS_TIMEOUT).addCallback(read).addCallback(parse)
    # (treq's timeout covers the response head only: the body gets the same bound)
    return fetched.addTimeout(JWKS_TIMEOUT, reactor)


def bearer(headers: Headers) -> bytes | None:
    """The request's bearer token, if it has one of a sane length."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and 0 < len(token) <= MAX_TOKEN:
                return token
            return None
    return None


def unverified_issuer(token: bytes) -> str | None:
    """The ``iss`` a token claims, before anything is verified (to pick its provider)."""
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def claim_field(value: Any) -> bytes | None:
    """A claim's value as a request field's, if it can be one."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return None
    data = text.encode("utf-8")
    if len(data) > MAX_CLAIM_FIELD or any(b < 0x20 or b == 0x7F for b in data):
        return None
    return data


class Provider:
    __slots__ = ("spec", "keys", "registry", "claims")

    def __init__(self, spec: ir.JWTProvider) -> None:
        self.spec = spec
        self.keys = KeySet.import_key_set(json.loads(spec.jwks)) if spec.jwks else None
        options: dict[str, Any] = {}
        if spec.issuer is not None:
            options["iss"] = {"essential": True, "value": spec.issuer}
        if spec.audiences:
            options["aud"] = {"essential": True, "values": list(spec.audiences)}
        self.registry = options
        self.claims = [(claim, header.encode()) for claim, header in spec.claim_to_headers]

    def verify(self, token: bytes, keys: KeySet, now: float) -> dict | None:
        """The token's claims if it is signed by ``keys`` and its claims hold."""
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(now=int(now), leeway=LEEWAY, **self.registry)
            registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError, RecursionError):
            return None  # (a token nested past the JSON parser's depth too)
        return decoded.claims


def _digest(token: bytes) -> bytes:
    return hashlib.blake2b(token, digest_size=16).digest()


class CompiledJWT:
    """A jwt section, ready to check requests."""

    __slots__ = ("policy", "providers", "fields", "remembered", "refused")

    def __init__(self, spec: ir.JWTAuth) -> None:
        self.policy = spec.policy
        self.providers = [Provider(p) for p in spec.providers]
        #: every field a claim may be put in: a client's own copies are dropped
        self.fields = frozenset(h for p in self.providers for _, h in p.claims)
        # (both keyed by a token's digest: 16 bytes held, not a client's 8 KiB)
        #: token -> (provider, claims, until)
        self.remembered: OrderedDict[bytes, tuple[Provider, dict, float]] = OrderedDict()
        #: tokens refused lately -> until when (a bad token is not checked again at once)
        self.refused: OrderedDict[bytes, float] = OrderedDict()

    def refuse(self, token: bytes, now: float) -> None:
        self.refused[_digest(token)] = now + REMEMBER_REFUSED
        if len(self.refused) > MAX_REMEMBERED:
            self.refused.popitem(last=False)

    def was_refused(self, token: bytes, now: float) -> bool:
        key = _digest(token)
        until = self.refused.get(key)
        if until is None:
            return False
        if until <= now:
            del self.refused[key]
            return False
        return True

    def candidates(self, token: bytes) -> list[Provider]:
        issuer = unverified_issuer(token)
        return [p for p in self.providers if p.spec.issuer in (None, issuer)]

    def remember(self, token: bytes, provider: Provider, claims: dict, now: float) -> None:
        expiry = claims.get("exp")
        until = float(expiry) if isinstance(expiry, int | float) else now + REMEMBER_WITHOUT_EXPIRY
        self.remembered[_digest(token)] = (provider, claims, until)
        if len(self.remembered) > MAX_REMEMBERED:
            self.remembered.popitem(last=False)

    def recall(self, token: bytes, now: float) -> tuple[Provider, dict] | None:
        key = _digest(token)
        found = self.remembered.get(key)
        if found is None:
            return None
        if found[2] + LEEWAY <= now:
            del self.remembered[key]
            return None
        self.remembered.move_to_end(key)
        return found[0], found[1]

    def with_claims(self, headers: Headers, provider: Provider, claims: dict) -> Headers:
        """``headers`` without a client's copies of claim fields, with the claims'."""
        fields = self.fields
        out = [field for field in headers if field[0] not in fields] if fields else list(headers)
        for claim, header in provider.claims:
            value = claim_field(claims.get(claim))
            if value is not None:
                out.append((header, value))
        return out
