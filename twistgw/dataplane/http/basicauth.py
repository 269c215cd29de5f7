"""HTTP Basic authentication against htpasswd entries (a SecurityPolicy's basicAuth).

``{SHA}`` entries are checked at once. bcrypt entries cost milliseconds of CPU by
design, so they are checked in the reactor's thread pool, never on the reactor, at
most ``MAX_CHECKING`` different credentials at a time per worker, and
``MAX_CHECKING_PER_USER`` for one user name (beyond that: 503,
rather than a queue an attacker could grow; requests with credentials being checked
wait for that check, so a burst of one client's requests costs one); a credential that
passed is remembered (by a digest of it and the entry), so a client does not pay
bcrypt on every request."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict

import bcrypt
from twisted.internet import threads
from twisted.internet.defer import Deferred

from twistgw.dataplane.http.messages import Headers
from twistgw.routing import ir

#: bcrypt checks running at once per worker, and for one user name (so guessing one
#: user's password cannot hold every check and keep the others out).
MAX_CHECKING = 16
MAX_CHECKING_PER_USER = 4
#: Requests that may wait for one check's outcome.
MAX_WAITING = 1024
#: Credentials remembered as good per worker.
MAX_REMEMBERED = 10000
#: The longest Authorization value read (user and password, base64).
MAX_CREDENTIALS = 4096


def credentials(headers: Headers) -> tuple[str, bytes] | None:
    """The user and password of a request's Basic Authorization, if it has one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, encoded = value.strip().partition(b" ")
            if scheme.lower() != b"basic" or len(encoded) > MAX_CREDENTIALS:
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            user, colon, password = decoded.partition(b":")
            if not colon:
                return None
            try:
                return user.decode("utf-8"), password
            except UnicodeDecodeError:
                return None
    return None


class Verifier:
    """Checks passwords for every basicAuth section of a worker; remembers good ones."""

    def __init__(self, reactor, in_thread=threads.deferToThread) -> None:
        self.reactor = reactor
        self.in_thread = in_thread
        self.remembered: OrderedDict[bytes, None] = OrderedDict()
        #: checks running, by credential digest: the requests waiting for each
        self.waiting: dict[bytes, list[Deferred]] = {}
        self.by_user: dict[str, int] = {}  # checks running per user name

    @property
    def checking(self) -> int:
        """bcrypt checks running (one per credential digest being checked)."""
        return len(self.waiting)

    def check(self, hashed: str, password: bytes, user: str = "") -> bool | Deferred | None:
        """Whether ``password`` matches the entry: a bool, a Deferred firing with one
        (bcrypt), or None when too many checks are running already. Requests with the
        same credentials while one is checked wait for that check."""
        entry = hashed.encode()
        if entry.startswith(b"{SHA}"):
            digest = base64.b64encode(hashlib.sha1(password).digest())
            return hmac.compare_digest(digest, entry[5:])
        memo = hashlib.sha256(entry + b"\0" + password).digest()
        if memo in self.remembered:
            self.remembered.move_to_end(memo)
            return True
        waiting = self.waiting.get(memo)
        if waiting is not None:
            if len(waiting) >= MAX_WAITING:
                return None
            waiter: Deferred = Deferred()
            waiting.append(waiter)
            return waiter
        by_user = self.by_user.get(user, 0)
        if self.checking >= MAX_CHECKING or by_user >= MAX_CHECKING_PER_USER:
            return None
        self.by_user[user] = by_user + 1
        self.waiting[memo] = waiting = []

        def done(matched: bool) -> bool:
            left = self.by_user.pop(user) - 1
            if left:
                self.by_user[user] = left
            del self.waiting[memo]
            if matched:
                self.remembered[memo] = None
                if len(self.remembered) > MAX_REMEMBERED:
                    self.remembered.popitem(last=False)
            for waiter in waiting:
                waiter.callback(matched)
            return matched

        found = self.in_thread(_bcrypt_matches, password, entry)
        return found.addErrback(lambda _: False).addCallback(done)


def _bcrypt_matches(password: bytes, entry: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:72], entry)
    except ValueError:  # (a malformed hash)
        return False


class CompiledBasicAuth:
    __slots__ = ("users", "challenge", "policy")

    def __init__(self, spec: ir.BasicAuth) -> None:
        self.policy = spec.policy
        self.users = dict(spec.users)
        self.challenge = [
            (b"www-authenticate", b'Basic realm="%s", charset="UTF-8"' % spec.realm.encode())
        ]
