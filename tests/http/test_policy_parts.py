"""The parts of TrafficPolicy and SecurityPolicy enforcement, without sockets: the shared
GCRA buckets (also from two processes at once), client addresses behind trusted
proxies, CIDR sets, Accept-Encoding and which responses are compressed, Basic
credentials and their checks, bearer tokens, JWT providers and remote key sets."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time

import bcrypt
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from twistgw.dataplane.http.basicauth import (
    MAX_CHECKING,
    MAX_CHECKING_PER_USER,
    Verifier,
    credentials,
)
from twistgw.dataplane.http.clientaddr import Networks, client_address, parse_address
from twistgw.dataplane.http.compression import CompiledCompression, Encoder, accepted
from twistgw.dataplane.http.discard import DiscardBody
from twistgw.dataplane.http.jwtauth import (
    JWKS_REFRESH,
    JWKS_RETRY,
    KeySets,
    Provider,
    bearer,
    claim_field,
    unverified_issuer,
)
from twistgw.dataplane.http.messages import Response
from twistgw.dataplane.ratelimit import WAYS, SharedBuckets, shared_file
from twistgw.routing import ir

# -- rate-limit buckets


def test_a_bucket_allows_its_burst_then_refills_evenly() -> None:
    buckets = SharedBuckets(slots=64)
    taken = [buckets.take(b"k", 1.0, 3, 100.0) for _ in range(4)]
    assert [d.allowed for d in taken] == [True, True, True, False]
    assert [d.remaining for d in taken] == [2, 1, 0, 0]
    assert taken[3].retry_after == pytest.approx(1.0)
    assert taken[2].reset == pytest.approx(3.0)
    assert not buckets.take(b"k", 1.0, 3, 100.5).allowed
    assert buckets.take(b"k", 1.0, 3, 101.0).allowed  # one refilled
    assert not buckets.take(b"k", 1.0, 3, 101.0).allowed
    assert buckets.take(b"other", 1.0, 3, 101.0).remaining == 2  # keys apart


def test_remaining_counts_survive_rounding() -> None:
    buckets = SharedBuckets(slots=64)
    assert [buckets.take(b"k", 1 / 3, 3, 7.0).remaining for _ in range(3)] == [2, 1, 0]


def test_a_clock_stepping_back_costs_at_most_a_full_refill() -> None:
    buckets = SharedBuckets(slots=64)
    for _ in range(2):
        buckets.take(b"k", 10.0, 2, 1000.0)
    refused = buckets.take(b"k", 10.0, 2, 500.0)  # the clock went back 500 s
    assert not refused.allowed
    assert refused.retry_after <= 10.0
    assert buckets.take(b"k", 10.0, 2, 510.0).allowed  # as from an empty bucket


def test_a_full_set_makes_room_from_the_bucket_nearest_to_refilled() -> None:
    buckets = SharedBuckets(slots=WAYS)  # one set: every key shares it
    for n in range(WAYS):  # each key spends its one request, refilling at 100 + n
        assert buckets.take(b"key%d" % n, 100.0 + n, 1, 0.0).allowed
    assert buckets.take(b"newcomer", 1.0, 1, 0.0).allowed  # key0 made room
    assert buckets.take(b"key0", 100.0, 1, 0.0).allowed  # forgotten: allowed again
    assert not buckets.take(b"key%d" % (WAYS - 1), 100.0 + WAYS - 1, 1, 0.0).allowed


def test_slots_must_fill_whole_sets() -> None:
    with pytest.raises(ValueError):
        SharedBuckets(slots=WAYS + 1)


TAKER = """
import sys, time
from twistgw.dataplane.ratelimit import SharedBuckets
buckets = SharedBuckets(int(sys.argv[1]), 64)
while time.time() < float(sys.argv[2]):  # both start together, to contend for the lock
    pass
allowed = 0
for _ in range(20000):
    allowed += buckets.take(b"shared", 3600.0, 5000, 1000.0).allowed
print(allowed)
"""


def test_two_processes_share_one_bucket_exactly() -> None:
    fd = shared_file(64)
    start = str(time.time() + 2)
    try:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", TAKER, str(fd), start],
                pass_fds=(fd,),
                stdout=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        counts = [int(child.communicate(timeout=120)[0]) for child in children]
    finally:
        os.close(fd)
    # the burst, however the two interleaved (without the lock, updates would be lost:
    # more allowed)
    assert sum(counts) == 5000
    assert all(counts)  # (both took part)
    assert all(children[i].returncode == 0 for i in range(2))


# -- client addresses

TRUSTED = Networks(["10.0.0.0/8", "192.168.1.1/32", "2001:db8::/32"])


@pytest.mark.parametrize(
    "peer, forwarded, expected",
    [
        (b"203.0.113.9", [b"1.2.3.4"], "203.0.113.9"),  # untrusted peer: its own address
        (b"10.1.1.1", [], "10.1.1.1"),  # trusted, nothing forwarded
        (b"10.1.1.1", [b"1.2.3.4"], "1.2.3.4"),
        (b"10.1.1.1", [b"6.6.6.6, 1.2.3.4, 192.168.1.1"], "1.2.3.4"),  # hops skipped
        (b"10.1.1.1", [b"6.6.6.6", b"1.2.3.4"], "1.2.3.4"),  # several fields: in order
        (b"10.1.1.1", [b"10.2.2.2, 10.3.3.3"], "10.2.2.2"),  # all trusted: the leftmost
        (b"10.1.1.1", [b"1.2.3.4, junk"], "10.1.1.1"),  # malformed: stop at its writer
        (b"10.1.1.1", [b" 2001:db9::1 "], "2001:db9::1"),
        (b"::ffff:10.1.1.1", [b"1.2.3.4"], "1.2.3.4"),  # v4-mapped peer is its v4 address
        (b"not-an-ip", [], None),
    ],
)
def test_the_client_behind_trusted_proxies(peer, forwarded, expected) -> None:
    headers = [(b"x-forwarded-for", value) for value in forwarded]
    found = client_address(peer, headers, TRUSTED)
    assert (str(found) if found is not None else None) == expected


def test_networks_match_by_prefix() -> None:
    networks = Networks(["10.0.0.0/8", "192.0.2.128/25", "2001:db8:1::/48", "0.0.0.0/32"])
    inside = ["10.255.0.1", "192.0.2.200", "2001:db8:1:ffff::1", "0.0.0.0"]
    outside = ["11.0.0.1", "192.0.2.127", "2001:db8:2::1", "0.0.0.1", "::"]
    assert all(parse_address(a) in networks for a in inside)
    assert not any(parse_address(a) in networks for a in outside)
    assert not Networks([])


# -- compression


@pytest.mark.parametrize(
    "header, weights",
    [
        (b"gzip, br", {b"gzip": 1.0, b"br": 1.0}),
        (b"GZIP;q=0.5 , br;Q=0", {b"gzip": 0.5, b"br": 0.0}),
        (b"gzip;q=nonsense", {b"gzip": 0.0}),
        (b"*;q=0.1,,", {b"*": 0.1}),
        (b"gzip, gzip;q=0", {b"gzip": 1.0}),  # the first mention counts
    ],
)
def test_accept_encoding_weights(header, weights) -> None:
    assert accepted(header) == weights


COMPRESSION = CompiledCompression(ir.Compression("ns/p", ("br", "gzip"), 100, ("text/html",)))


@pytest.mark.parametrize(
    "fields, chosen",
    [
        ([], None),
        ([(b"accept-encoding", b"gzip")], "gzip"),
        ([(b"accept-encoding", b"gzip, br")], "br"),  # the policy's order
        ([(b"accept-encoding", b"br;q=0, gzip")], "gzip"),
        ([(b"accept-encoding", b"*")], "br"),
        ([(b"accept-encoding", b"*, br;q=0")], "gzip"),
        ([(b"accept-encoding", b"deflate"), (b"accept-encoding", b"gzip")], "gzip"),
        ([(b"accept-encoding", b"identity")], None),
        ([(b"accept-encoding", b"gzip, " * 300)], None),  # too long to read
    ],
)
def test_the_encoding_chosen(fields, chosen) -> None:
    assert COMPRESSION.choose(fields) == chosen


@pytest.mark.parametrize(
    "status, fields, length, compressed",
    [
        (200, [(b"content-type", b"text/html; charset=utf-8")], None, True),
        (200, [(b"content-type", b"TEXT/HTML")], 100, True),
        (200, [(b"content-type", b"text/html")], 99, False),  # under minSize
        (206, [(b"content-type", b"text/html")], None, False),
        (200, [(b"content-type", b"image/png")], None, False),
        (200, [], None, False),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")], None, False),
        (200, [(b"content-type", b"text/html"), (b"cache-control", b"No-Transform")], None, False),
    ],
)
def test_which_responses_are_compressed(status, fields, length, compressed) -> None:
    response = Response(status, fields, length)
    encoder = COMPRESSION.encoder_for(response, "gzip")
    assert (encoder is not None) == compressed
    if compressed:
        assert response.length is None
        assert (b"content-encoding", b"gzip") in response.headers
        assert (b"vary", b"Accept-Encoding") in response.headers


def test_a_response_head_gets_vary_and_a_weak_etag() -> None:
    fields = [(b"content-type", b"text/html"), (b"etag", b'"x"'), (b"vary", b"Origin")]
    response = Response(200, fields)
    COMPRESSION.encoder_for(response, "br")
    assert response.headers == [
        (b"content-type", b"text/html"),
        (b"etag", b'W/"x"'),
        (b"vary", b"Origin, Accept-Encoding"),
        (b"content-encoding", b"br"),
    ]


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_an_encoder_streams_what_it_has_at_each_flush(encoding) -> None:
    import gzip

    import brotli
    import zstandard

    decode = {
        "gzip": gzip.decompress,
        "br": brotli.decompress,
        "zstd": lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d),
    }[encoding]
    encoder = Encoder(encoding)
    first = encoder.compress(b"event: one\n\n") + encoder.flush()
    assert first  # the first event went out before the stream ended
    rest = encoder.compress(b"event: two\n\n") + encoder.flush() + encoder.finish()
    assert decode(first + rest) == b"event: one\n\nevent: two\n\n"


# -- Basic authentication


def _basic(text: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(text))]


@pytest.mark.parametrize(
    "fields, expected",
    [
        (_basic(b"alice:secret"), ("alice", b"secret")),
        (_basic(b"alice:with:colons"), ("alice", b"with:colons")),
        (_basic("zoë:pässword".encode()), ("zoë", "pässword".encode())),
        (_basic(b"no-colon"), None),
        (_basic(b"\xff:x"), None),  # not UTF-8
        ([(b"authorization", b"Bearer abc")], None),
        ([(b"authorization", b"Basic !!!")], None),
        ([(b"authorization", b"basic " + base64.b64encode(b"a:b"))], ("a", b"b")),
        ([(b"authorization", b"Basic " + b"A" * 5000)], None),  # too long to read
        ([], None),
    ],
)
def test_basic_credentials(fields, expected) -> None:
    assert credentials(fields) == expected


def test_sha_entries_are_checked_at_once() -> None:
    verifier = Verifier(None)
    entry = "{SHA}" + base64.b64encode(hashlib.sha1(b"builder").digest()).decode()
    assert verifier.check(entry, b"builder") is True
    assert verifier.check(entry, b"Builder") is False


def _now(function, *args):
    """Run ``function`` here and now (what the thread pool would run)."""
    return succeed(function(*args))


def test_bcrypt_entries_are_checked_off_the_reactor_and_remembered() -> None:
    ran = []

    def in_thread(function, *args):
        ran.append(args)
        return _now(function, *args)

    verifier = Verifier(None, in_thread=in_thread)
    entry = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode()
    results = []
    verifier.check(entry, b"wonderland").addCallback(results.append)
    verifier.check(entry, b"looking-glass").addCallback(results.append)
    assert results == [True, False]
    assert verifier.check(entry, b"wonderland") is True  # remembered: no thread
    assert len(ran) == 2
    assert verifier.check("$2y$04$malformed", b"x") is not None  # (answers False)


def test_bcrypt_checks_at_once_are_bounded() -> None:
    pending = []

    def in_thread(function, *args):
        pending.append(Deferred())
        return pending[-1]

    verifier = Verifier(None, in_thread=in_thread)
    entry = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    for n in range(MAX_CHECKING):  # different users and passwords: a check each
        assert isinstance(verifier.check(entry, b"guess%d" % n, f"user{n}"), Deferred)
    assert verifier.check(entry, b"another", "late") is None  # busy: the caller answers 503
    pending[0].callback(False)
    assert isinstance(verifier.check(entry, b"another", "late"), Deferred)


def test_guessing_one_users_password_cannot_hold_every_check() -> None:
    verifier = Verifier(None, in_thread=lambda function, *args: Deferred())
    entry = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    for n in range(MAX_CHECKING_PER_USER):
        assert isinstance(verifier.check(entry, b"guess%d" % n, "alice"), Deferred)
    assert verifier.check(entry, b"guess-more", "alice") is None
    assert isinstance(verifier.check(entry, b"pw", "bob"), Deferred)  # others still get in


# -- JWT


@pytest.mark.parametrize(
    "fields, token",
    [
        ([(b"authorization", b"Bearer abc.def.ghi")], b"abc.def.ghi"),
        ([(b"authorization", b"bearer   abc ")], b"abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer " + b"a" * 9000)], None),
        ([(b"authorization", b"Bearer")], None),
        ([], None),
    ],
)
def test_bearer_tokens(fields, token) -> None:
    assert bearer(fields) == token


def _segment(value: dict) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")


@pytest.mark.parametrize(
    "token, issuer",
    [
        (b"h." + _segment({"iss": "https://a"}) + b".s", "https://a"),
        (b"h." + _segment({"iss": 5}) + b".s", None),
        (b"h." + _segment(["iss"]) + b".s", None),
        (b"h.!!!.s", None),
        (b"only.two", None),
    ],
)
def test_the_issuer_a_token_claims(token, issuer) -> None:
    assert unverified_issuer(token) == issuer


@pytest.mark.parametrize(
    "value, field",
    [
        ("alice", b"alice"),
        (42, b"42"),
        (True, b"true"),
        ("zo\u00eb", "zo\u00eb".encode()),
        ("a\r\nx-admin: yes", None),  # a claim cannot write a field of its own
        ({"nested": 1}, None),
        ("x" * 2000, None),
    ],
)
def test_claims_as_request_fields(value, field) -> None:
    assert claim_field(value) == field


def test_a_provider_checks_signature_and_claims() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k"}, private=True)
    keys = KeySet.import_key_set(KeySet([key]).as_dict(private=False))
    provider = Provider(ir.JWTProvider("p", "https://i", ("api",), jwks=json.dumps(keys.as_dict())))

    def token(**claims) -> bytes:
        payload = {"iss": "https://i", "aud": "api", "exp": 2000, **claims}
        return jwt.encode({"alg": "ES256", "kid": "k"}, payload, key).encode()

    assert provider.verify(token(), provider.keys, 1000.0)["iss"] == "https://i"
    assert provider.verify(token(), provider.keys, 2100.0) is None  # expired
    assert provider.verify(token(aud="else"), provider.keys, 1000.0) is None
    hmac_token = jwt.encode(
        {"alg": "HS256"}, {"iss": "https://i", "aud": "api"}, OctKey.import_key(b"k" * 32)
    )
    assert provider.verify(hmac_token.encode(), provider.keys, 1000.0) is None


def test_remote_key_sets_are_fetched_once_and_kept_when_a_refresh_fails() -> None:
    clock = Clock()
    fetches: list[Deferred] = []

    def fetch(uri: str) -> Deferred:
        fetches.append(Deferred())
        return fetches[-1]

    sets = KeySets(clock, fetch)
    first, second = sets.get("https://k"), sets.get("https://k")
    assert isinstance(first, Deferred) and isinstance(second, Deferred)
    assert len(fetches) == 1  # one fetch for both
    keys = KeySet([])
    got: list = []
    first.addCallback(got.append)
    fetches[0].callback(keys)
    assert got == [keys]
    assert sets.get("https://k") is keys
    clock.advance(JWKS_REFRESH)
    assert sets.get("https://k") is keys  # refreshing: the old keys serve meanwhile
    fetches[1].errback(ValueError("down"))
    assert sets.get("https://k") is keys and len(fetches) == 2  # kept; no new try yet
    clock.advance(JWKS_RETRY)
    sets.get("https://k")
    assert len(fetches) == 3


def test_a_key_set_that_never_came_answers_none() -> None:
    clock = Clock()
    fetches: list[Deferred] = []
    sets = KeySets(clock, lambda uri: fetches.append(Deferred()) or fetches[-1])
    waiting = sets.get("https://k")
    outcome: list = []
    waiting.addCallback(outcome.append)
    fetches[0].errback(ValueError("down"))
    assert outcome == [None]
    assert sets.get("https://k") is None  # until the retry is due


def test_the_same_credentials_checked_at_once_share_one_check() -> None:
    pending = []

    def in_thread(function, *args):
        pending.append((Deferred(), function, args))
        return pending[-1][0]

    verifier = Verifier(None, in_thread=in_thread)
    entry = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    outcomes: list[bool] = []
    for _ in range(MAX_CHECKING * 2):  # more than the bound: all wait for one check
        verifier.check(entry, b"pw").addCallback(outcomes.append)
    assert len(pending) == 1
    found, function, args = pending[0]
    found.callback(function(*args))
    assert outcomes == [True] * MAX_CHECKING * 2
    assert verifier.checking == 0 and not verifier.waiting


def test_a_key_set_url_refused_at_once_leaves_nobody_waiting() -> None:
    clock = Clock()
    tries: list[str] = []

    def fetch(uri: str) -> Deferred:
        tries.append(uri)
        raise ValueError("Empty Label")  # (as twisted.web's Agent does for some URLs)

    sets = KeySets(clock, fetch)
    assert sets.get("https://a..b/") is None  # failed at once: no waiter to hang
    clock.advance(JWKS_RETRY)
    assert sets.get("https://a..b/") is None and len(tries) == 2  # tried again, in time


class _BodyTransport:
    stopped = False

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True


@pytest.mark.parametrize(
    "chunks, wait, stopped",
    [
        ([b"ok"], 0, False),  # a short body, ended: its connection is kept
        ([b"x" * 40_000, b"x" * 40_000], 0, True),  # past the limit: given up
        ([b"trickle"], 5.0, True),  # never ending: given up at the timeout
    ],
)
def test_an_unwanted_body_is_dropped_within_bounds(chunks, wait, stopped) -> None:
    clock = Clock()
    body = DiscardBody(clock, 5.0)
    body.makeConnection(transport := _BodyTransport())
    for chunk in chunks:
        body.dataReceived(chunk)
    clock.advance(wait)
    if not stopped:
        body.connectionLost(None)
        clock.advance(10)
    assert transport.stopped is stopped and not clock.getDelayedCalls()
