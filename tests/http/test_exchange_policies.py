"""A route's policies in the exchange without sockets (an HTTP/1.1 client connection on
a fake transport, ``task.Clock`` for the timers): checks that finish later answer at
most once, within one deadline for them all, and a request let in by Basic credentials
carries no client copy of the fields a JWT's claims fill."""

from __future__ import annotations

import base64
import hashlib

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from twisted.internet.defer import Deferred

from tests.http.test_exchange_resilience import REQUEST, _gateway, response
from twistgw.dataplane.http.basicauth import Verifier
from twistgw.dataplane.http.jwtauth import JWKS_RETRY, KeySets
from twistgw.dataplane.http.policies import CHECK_TIMEOUT
from twistgw.routing import ir

SHA = "{SHA}" + base64.b64encode(hashlib.sha1(b"builder").digest()).decode()
BCRYPT = "$2y$04$" + "a" * 53  # (never really checked: the test answers for bcrypt)


def _basic(user: str, password: str) -> bytes:
    token = base64.b64encode(f"{user}:{password}".encode())
    return b"GET /x HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic %s\r\n" % token


def _with_checks_answered_by_hand():
    users = (("alice", BCRYPT), ("bob", SHA))
    policies = ir.Policies(basic_auth=ir.BasicAuth("ns/p", "r", users))
    clock, pool, client, protocol = _gateway(policies=policies)
    answers: list[Deferred] = []
    protocol.factory.guards.verifier = Verifier(
        None, in_thread=lambda function, *args: answers.append(Deferred()) or answers[-1]
    )
    return clock, pool, client, protocol, answers


def test_a_check_answered_after_its_deadline_answers_nothing_more() -> None:
    clock, pool, client, protocol, answers = _with_checks_answered_by_hand()
    protocol.dataReceived(_basic("alice", "guess-1") + b"\r\n")
    clock.advance(CHECK_TIMEOUT)
    assert client.data.startswith(b"HTTP/1.1 503 ")
    client.data = b""
    protocol.dataReceived(_basic("bob", "builder") + b"\r\n")  # the next request: in
    pool.backends[0].dataReceived(response(200, b"ok"))
    answers[0].callback(False)  # alice's late answer: no 401 for anyone now
    assert client.data.count(b"HTTP/1.1 ") == 1 and client.data.startswith(b"HTTP/1.1 200 ")


def test_checks_that_go_on_later_share_one_deadline() -> None:
    clock, pool, client, protocol, answers = _with_checks_answered_by_hand()
    protocol.dataReceived(_basic("alice", "pw") + b"\r\n")
    clock.advance(CHECK_TIMEOUT - 1)
    answers[0].callback(True)  # in time: the request goes on, the deadline is gone
    assert len(pool.backends) == 1
    clock.advance(5)  # (past the deadline: had it not been stopped, a 503 now)
    assert client.data == b""


def test_a_basic_user_cannot_bring_the_fields_a_tokens_claims_fill() -> None:
    provider = ir.JWTProvider(
        "p", jwks_uri="https://keys.example/jwks", claim_to_headers=(("sub", "x-user"),)
    )
    policies = ir.Policies(
        basic_auth=ir.BasicAuth("ns/p", "r", (("bob", SHA),)), jwt=ir.JWTAuth("ns/p", (provider,))
    )
    clock, pool, client, protocol = _gateway(policies=policies)
    protocol.dataReceived(_basic("bob", "builder") + b"X-User: admin\r\n\r\n")
    sent = pool.backends[0].transport.data.lower()
    assert sent.startswith(b"get /x http/1.1") and b"x-user" not in sent


def test_without_credentials_the_answer_is_401_at_once() -> None:
    clock, pool, client, protocol, answers = _with_checks_answered_by_hand()
    protocol.dataReceived(REQUEST)
    assert client.data.startswith(b"HTTP/1.1 401 ") and not answers and not pool.backends


def test_a_token_refused_while_its_key_set_could_not_be_fetched_is_checked_again() -> None:
    """A key set that could not be fetched refuses the token (401), but does not keep
    it refused: once the keys come, the same token is let in."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k"}, private=True)
    keys = KeySet.import_key_set(KeySet([key]).as_dict(private=False))
    payload = {"iss": "https://i", "exp": 4_000_000_000}
    token = jwt.encode({"alg": "ES256", "kid": "k"}, payload, key).encode()
    provider = ir.JWTProvider("p", "https://i", jwks_uri="https://keys.example/jwks")
    clock, pool, client, protocol = _gateway(
        policies=ir.Policies(jwt=ir.JWTAuth("ns/p", (provider,)))
    )
    fetches: list[Deferred] = []
    protocol.factory.guards.key_sets = KeySets(
        clock, lambda uri: fetches.append(Deferred()) or fetches[-1]
    )
    request = b"GET /x HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer %s\r\n\r\n" % token
    protocol.dataReceived(request)
    fetches[0].errback(ValueError("the key server is down"))
    assert client.data.startswith(b"HTTP/1.1 401 ") and not pool.backends
    clock.advance(JWKS_RETRY)
    client.data = b""
    protocol.dataReceived(request)
    fetches[1].callback(keys)
    assert len(pool.backends) == 1  # (let in: not refused again from memory)
