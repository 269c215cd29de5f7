"""TrafficPolicy and SecurityPolicy through a real gateway with two workers: a rate
limit exact across the workers (429 with Retry-After and RateLimit fields), IP access
lists on the real client address (X-Forwarded-For from a trusted proxy), Basic
authentication with bcrypt and {SHA} entries, compressed responses that decompress to
the original, a route refused for a policy it cannot use, and the policies' status."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator

import bcrypt
import brotli
import pytest
import zstandard
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.support.gateway import GatewayProcess, free_port, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.procs import connection_owner
from tests.support.rawbackend import Conn, RawBackend

POLICIES = "gateway.twistgw.dev/v1alpha1"
#: What the backend answers on /text: compressible, and long enough.
TEXT = b"".join(b"line %d of a page worth compressing\n" % n for n in range(400))


#: POSTs to /checked/slow the backend answered (the first gets a 503, to be retried)
SLOW_POSTS = []


def answer(conn: Conn) -> None:
    """/text: TEXT as text/html (/text/chunked: chunked); a first POST to /checked/slow:
    503; anything else: a short 200."""
    while (request := conn.read_request()) is not None:
        target = request.split(b" ", 2)[1]
        if request.startswith(b"POST /checked/slow"):
            SLOW_POSTS.append(request)
            if len(SLOW_POSTS) == 1:
                conn.send(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
                continue
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif target == b"/text/chunked":
            half = len(TEXT) // 2
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b'Transfer-Encoding: chunked\r\nETag: "v1"\r\n\r\n'
                b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (half, TEXT[:half], len(TEXT) - half, TEXT[half:])
            )
        elif target.startswith(b"/text"):
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                % (len(TEXT), TEXT)
            )
        else:
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
            )


def _policy(kind: str, name: str, target: dict, **spec) -> dict:
    return {
        "apiVersion": POLICIES,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", **target}], **spec},
    }


def _rule(name: str, path: str) -> dict:
    return {
        "name": name,
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": [backend("web")],
    }


ENCODINGS = {"types": ["zstd", "br", "gzip"]}
GONE = {"name": "no-such-secret"}
HTPASSWD = "\n".join(
    [
        "# users of the admin area",
        "alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode(),
        "bob:{SHA}" + base64.b64encode(hashlib.sha1(b"builder").digest()).decode(),
    ]
)


KEY = ECKey.generate_key("P-256", parameters={"kid": "local"}, private=True)
REMOTE_KEY = RSAKey.generate_key(2048, parameters={"kid": "remote"}, private=True)
STRANGER = ECKey.generate_key("P-256", parameters={"kid": "local"}, private=True)
ISSUER = "https://issuer.example"


def serve_jwks(conn: Conn) -> None:
    """A JWKS endpoint: the remote provider's public keys."""
    body = json.dumps(KeySet([REMOTE_KEY]).as_dict(private=False)).encode()
    while conn.read_request() is not None:
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )


def auth_service(conn: Conn) -> None:
    """An auth service: "Authorization: let-me-in" passes (as user 7), a target with
    /public passes as nobody, one with /slow after 0.3 s, one with /login is
    redirected, anything else is refused with a challenge."""
    while (request := conn.read_request()) is not None:
        head = request.lower()
        line = request.split(b"\r\n", 1)[0]
        if b"/slow" in line:
            time.sleep(0.3)  # (the client's body comes meanwhile)
        if b"/public" in line or b"/slow" in line:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif b"/login" in line:
            conn.send(b"HTTP/1.1 302 Found\r\nLocation: https://login.example/\r\n")
            conn.send(b"Content-Length: 0\r\n\r\n")
        elif b"\r\nauthorization: let-me-in\r\n" in head:
            conn.send(b"HTTP/1.1 204 No Content\r\nX-User-Id: 7\r\nX-Other: no\r\n\r\n")
        else:
            body = b'{"error": "who are you?"}'
            conn.send(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Custom\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )


@pytest.fixture(scope="module")
def auth() -> Iterator[RawBackend]:
    auth = RawBackend(auth_service)
    yield auth
    auth.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RawBackend]:
    server = RawBackend(answer)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(server, auth) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(("--workers", "2", "--trusted-proxies", "127.0.0.1/32")).start()
    keys = RawBackend(serve_jwks)
    route = "web"
    rules = [
        _rule("limited", "/limited"),
        _rule("denied", "/denied"),
        _rule("office", "/office"),
        _rule("admin", "/admin"),
        _rule("text", "/text"),
        _rule("broken", "/broken"),
        _rule("token", "/token"),
        {**_rule("checked-retry", "/checked/slow"), "retry": {"codes": [503], "attempts": 1}},
        _rule("checked", "/checked"),
        _rule("unchecked", "/unchecked"),
        _rule("open", "/"),
    ]

    def rule(section: str) -> dict:
        return {"kind": "HTTPRoute", "name": route, "sectionName": section}

    documents = [
        gateway_class(),
        gateway_manifest(),
        *service("web", [server.address]),
        *service("auth", [auth.address], port=9000),
        *service("no-auth", [("127.0.0.1", free_port())], port=9000),
        _policy(
            "SecurityPolicy",
            "checked",
            rule("checked"),
            extAuth={
                "http": {
                    "backendRef": {"name": "auth", "port": 9000},
                    "path": "/verify",
                    "headersToBackend": ["Authorization"],
                    "headersFromAuth": ["X-User-Id"],
                }
            },
        ),
        _policy(
            "SecurityPolicy",
            "checked-retry",
            rule("checked-retry"),
            extAuth={"http": {"backendRef": {"name": "auth", "port": 9000}}},
        ),
        _policy(
            "SecurityPolicy",
            "unchecked",
            rule("unchecked"),
            extAuth={"http": {"backendRef": {"name": "no-auth", "port": 9000}}},
        ),
        http_route(route, rules),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "admins", "namespace": "default"},
            "stringData": {".htpasswd": HTPASSWD},
        },
        _policy(
            "TrafficPolicy",
            "limited",
            rule("limited"),
            rateLimit={"requests": 5, "unit": "Hour", "key": {"type": "Global"}},
        ),
        _policy("TrafficPolicy", "text", rule("text"), compression=ENCODINGS),
        _policy("SecurityPolicy", "denied", rule("denied"), ipAccess={"deny": ["127.0.0.0/8"]}),
        _policy("SecurityPolicy", "office", rule("office"), ipAccess={"allow": ["10.0.0.0/8"]}),
        _policy(
            "SecurityPolicy",
            "admin",
            rule("admin"),
            basicAuth={"secretRef": {"name": "admins"}, "realm": "Admin area"},
        ),
        _policy("SecurityPolicy", "broken", rule("broken"), basicAuth={"secretRef": GONE}),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "jwks", "namespace": "default"},
            "stringData": {"jwks": json.dumps(KeySet([KEY]).as_dict(private=False))},
        },
        _policy(
            "SecurityPolicy",
            "token",
            rule("token"),
            jwt={
                "providers": [
                    {
                        "name": "local",
                        "issuer": ISSUER,
                        "audiences": ["api"],
                        "jwks": {"secretRef": {"name": "jwks"}},
                        "claimToHeaders": [{"claim": "sub", "header": "X-User"}],
                    },
                    {
                        "name": "remote",
                        "issuer": "https://remote.example",
                        "jwks": {"uri": "http://{}:{}/jwks".format(*keys.address)},
                    },
                ]
            },
        ),
    ]
    gateway.write("policies.yaml", documents)
    wait_until(lambda: gateway.request("/open")[0] == 200, what="routes to be served")
    wait_until(lambda: gateway.request("/denied")[0] == 403, what="the policies to be in force")
    yield gateway
    gateway.stop()
    keys.close()


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, str]]:
    connection.request("GET", path, headers={"Host": "example.com"})
    response = connection.getresponse()
    response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


def test_a_rate_limit_is_exact_across_the_workers(gateway) -> None:
    pids = [w["pid"] for w in json.loads(gateway.admin("/config_dump")[1])["workers"]]
    owned: dict[int, http.client.HTTPConnection] = {}
    for _ in range(60):  # a keep-alive connection held by each worker
        connection = http.client.HTTPConnection(gateway.address, 8080, timeout=10)
        assert _get(connection, "/open")[0] == 200
        owner = connection_owner(connection.sock, pids)
        if owner in owned or owner is None:
            connection.close()
        else:
            owned[owner] = connection
        if len(owned) == 2:
            break
    assert len(owned) == 2, "connections did not reach both workers"
    answers = [_get(connection, "/limited") for _ in range(6) for connection in owned.values()]
    codes = [code for code, _ in answers]
    assert codes == [200] * 5 + [429] * 7  # 5 in all, not 5 per worker
    first, refused = answers[0][1], answers[5][1]
    assert (first["ratelimit-limit"], first["ratelimit-remaining"]) == ("5", "4")
    assert refused["ratelimit-remaining"] == "0"
    assert 0 < int(refused["retry-after"]) <= 720  # one request refills every 12 minutes
    for connection in owned.values():
        connection.close()


def test_a_denied_address_gets_403(gateway) -> None:
    assert gateway.request("/denied")[0] == 403
    assert gateway.request("/open")[0] == 200


def test_an_allow_list_judges_the_address_a_trusted_proxy_forwarded_for(gateway) -> None:
    assert gateway.request("/office")[0] == 403  # 127.0.0.1 itself is not in 10/8
    forwarded = {"X-Forwarded-For": "10.20.30.40"}
    assert gateway.request("/office", headers=forwarded)[0] == 200
    # the client's own claim further left is not believed: 192.0.2.1 forwarded it
    spoofed = {"X-Forwarded-For": "10.20.30.40, 192.0.2.1"}
    assert gateway.request("/office", headers=spoofed)[0] == 403
    assert gateway.request("/office", headers={"X-Forwarded-For": "not an address"})[0] == 403


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_wants_a_user_and_their_password(gateway) -> None:
    code, headers, _ = gateway.request("/admin")
    assert code == 401
    assert headers["www-authenticate"] == 'Basic realm="Admin area", charset="UTF-8"'
    assert gateway.request("/admin", headers=_basic("alice", "wrong"))[0] == 401
    assert gateway.request("/admin", headers=_basic("mallory", "wonderland"))[0] == 401
    assert gateway.request("/admin", headers=_basic("alice", "wonderland"))[0] == 200
    assert gateway.request("/admin", headers=_basic("alice", "wonderland"))[0] == 200  # (known)
    assert gateway.request("/admin", headers=_basic("bob", "builder"))[0] == 200
    assert gateway.request("/admin", headers=_basic("bob", "builder!"))[0] == 401
    assert gateway.request("/admin", headers={"Authorization": "Basic ###"})[0] == 401


@pytest.mark.parametrize(
    "encoding, decode",
    [
        ("gzip", gzip.decompress),
        ("br", brotli.decompress),
        ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
    ],
)
@pytest.mark.parametrize("path", ["/text", "/text/chunked"])
def test_responses_are_compressed_as_the_client_accepts(gateway, encoding, decode, path) -> None:
    code, headers, body = gateway.request(path, headers={"Accept-Encoding": encoding})
    assert code == 200
    assert headers["content-encoding"] == encoding
    assert headers["vary"].lower() == "accept-encoding"
    assert "content-length" not in headers
    assert len(body) < len(TEXT) / 4
    assert decode(body) == TEXT
    if path == "/text/chunked":
        assert headers["etag"] == 'W/"v1"'


def test_the_servers_preference_and_the_clients_weights_pick_the_encoding(gateway) -> None:
    accept = {"Accept-Encoding": "gzip, br;q=0.5, zstd;q=0"}
    assert gateway.request("/text", headers=accept)[1]["content-encoding"] == "br"
    code, headers, body = gateway.request("/text", headers={"Accept-Encoding": "identity"})
    assert (code, body) == (200, TEXT)
    assert "content-encoding" not in headers
    assert gateway.request("/open", headers={"Accept-Encoding": "gzip"})[2] == b"ok\n"


def test_a_security_policy_it_cannot_use_refuses_its_route(gateway) -> None:
    code, _, body = gateway.request("/broken")
    assert code == 500
    assert b"security policy" in body


def test_policies_report_their_status(gateway) -> None:
    def accepted(kind: str, name: str) -> tuple[str, str]:
        item = gateway.status(kind, name) or {"status": {"ancestors": []}}
        ancestors = item["status"]["ancestors"]
        if not ancestors:
            return ("", "")
        found = ancestors[0]["conditions"][0]
        return (found["status"], found["reason"])

    wait_until(lambda: accepted("TrafficPolicy", "limited") == ("True", "Accepted"), what="status")
    assert accepted("SecurityPolicy", "admin") == ("True", "Accepted")
    assert accepted("SecurityPolicy", "broken") == ("False", "Invalid")


def _token(key=KEY, alg: str = "ES256", **claims) -> dict[str, str]:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "api", "sub": "alice", "exp": now + 300, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    token = jwt.encode({"alg": alg, "kid": key.kid}, payload, key)
    return {"Authorization": f"Bearer {token}"}


def _seen(server: RawBackend, marker: bytes) -> bytes:
    """The last request the backend got whose request line has ``marker``."""
    return [r for r in server.requests if marker in r.split(b"\r\n", 1)[0]][-1]


def test_jwt_wants_a_valid_token(gateway, server) -> None:
    code, headers, _ = gateway.request("/token/none")
    assert code == 401
    assert headers["www-authenticate"] == 'Bearer realm="default/token"'
    code, headers, _ = gateway.request("/token/mine", headers={**_token(), "X-User": "root"})
    assert code == 200
    seen = _seen(server, b"/token/mine").lower()
    assert b"\r\nx-user: alice\r\n" in seen
    assert b"x-user: root" not in seen  # the client's own copy is dropped
    assert gateway.request("/token/again", headers=_token())[0] == 200  # (remembered)


@pytest.mark.parametrize(
    "claims, key",
    [
        ({"exp": int(time.time()) - 3600}, KEY),  # expired
        ({"nbf": int(time.time()) + 3600}, KEY),  # not yet valid
        ({}, STRANGER),  # forged: another key with the same kid
        ({"aud": "other"}, KEY),
        ({"iss": "https://elsewhere.example"}, KEY),
    ],
)
def test_jwt_refuses_expired_forged_and_misaddressed_tokens(gateway, claims, key) -> None:
    code, headers, _ = gateway.request("/token/bad", headers=_token(key, **claims))
    assert code == 401
    assert headers["www-authenticate"].endswith('error="invalid_token"')


def test_jwt_refuses_unsigned_and_malformed_tokens(gateway) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": "api"}).encode())
    unsigned = f"{header}.{body.rstrip(b'=').decode()}."
    for token in (unsigned, "a.b.c", "x" * 9000, "not a token"):
        answer = gateway.request("/token/bad", headers={"Authorization": f"Bearer {token}"})
        assert answer[0] == 401


def test_jwt_keys_fetched_from_a_uri(gateway) -> None:
    remote = _token(REMOTE_KEY, alg="RS256", iss="https://remote.example", aud=None)
    assert gateway.request("/token/remote", headers=remote)[0] == 200


def test_ext_auth_lets_through_what_the_service_allows(gateway, server, auth) -> None:
    headers = {"Authorization": "let-me-in", "X-User-Id": "0", "Cookie": "secret"}
    assert gateway.request("/checked/in?q=1", headers=headers)[0] == 200
    asked = [r for r in auth.requests if b"/verify/checked/in?q=1" in r][-1].lower()
    assert asked.startswith(b"get /verify/checked/in?q=1 http/1.1\r\n")
    assert b"\r\nhost: example.com\r\n" in asked
    assert b"\r\nx-forwarded-uri: /checked/in?q=1\r\n" in asked
    assert b"cookie" not in asked  # only the fields listed go to the service
    seen = _seen(server, b"/checked/in").lower()
    assert b"\r\nx-user-id: 7\r\n" in seen and b"x-user-id: 0" not in seen
    assert b"x-other" not in seen


def test_ext_auth_denials_reach_the_client_as_the_service_made_them(gateway) -> None:
    code, headers, body = gateway.request("/checked/out")
    assert (code, body) == (401, b'{"error": "who are you?"}')
    assert headers["www-authenticate"] == "Custom"
    assert headers["content-type"] == "application/json"
    code, headers, _ = gateway.request("/checked/login")
    assert (code, headers["location"]) == (302, "https://login.example/")


def test_ext_auth_that_cannot_be_reached_is_503(gateway) -> None:
    assert gateway.request("/unchecked")[0] == 503


def test_ext_auth_never_lets_a_clients_own_identity_through(gateway, server) -> None:
    assert gateway.request("/checked/public", headers={"X-User-Id": "0"})[0] == 200
    seen = _seen(server, b"/checked/public").lower()
    assert b"x-user-id" not in seen  # the service named nobody: the client's copy dropped


def test_a_body_sent_while_a_check_runs_is_replayed_on_retry(gateway) -> None:
    body = b"payload " * 64
    connection = socket.create_connection((gateway.address, 8080), timeout=10)
    head = b"POST /checked/slow HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
    connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
    time.sleep(0.1)  # (the auth service is still thinking)
    connection.sendall(body)
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(SLOW_POSTS) == 2 and all(post.endswith(body) for post in SLOW_POSTS)


def test_a_token_nested_past_the_parsers_depth_is_refused(gateway) -> None:
    payload = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    token = f"eyJhbGciOiJFUzI1NiJ9.{payload}.x"
    assert gateway.request("/token/deep", headers={"Authorization": f"Bearer {token}"})[0] == 401
