"""The routing table: small frozen records, the translator's output and the data plane's
input. Everything here pickles losslessly (the supervisor sends it to workers) and turns
into plain JSON with ``attrs.asdict`` (the admin config dump)."""

from __future__ import annotations

from collections.abc import Iterator

import attrs


@attrs.frozen
class Endpoint:
    address: str
    port: int


@attrs.frozen
class HeaderModifier:
    """Set (replace), add (append) and remove headers; names as written."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@attrs.frozen
class PathModifier:
    """``ReplaceFullPath`` or ``ReplacePrefixMatch`` with its value."""

    type: str
    value: str


@attrs.frozen
class RequestRedirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathModifier | None = None
    status_code: int = 302


@attrs.frozen
class URLRewrite:
    hostname: str | None = None
    path: PathModifier | None = None


@attrs.frozen
class CORS:
    """A CORS filter (GEP-1767). Origins as written (``*``, ``https://*.example.com``,
    ``http://example.com:8080``); methods and headers as written, ``("*",)`` for any;
    ``max_age`` in seconds."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 5


@attrs.frozen
class PythonFilter:
    """An ExtensionRef filter's PythonFilter: the installed plugin it runs and its
    config (JSON text, checked against the plugin's schema). ``problem``: why it cannot
    run (a missing object or plugin, a config refused); the rule then answers 500."""

    name: str  # "namespace/name" of the PythonFilter
    plugin: str = ""
    config: str = "{}"
    problem: str | None = None


@attrs.frozen
class Filters:
    """The filters of a rule or a backendRef, in the order the spec applies them;
    ``mirrors``: the rule's RequestMirror filters whose backends resolved; ``python``:
    its ExtensionRef filters to PythonFilters, in order."""

    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: RequestRedirect | None = None
    rewrite: URLRewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: CORS | None = None
    python: tuple[PythonFilter, ...] = ()


@attrs.frozen
class BackendTLS:
    """TLS towards a backend, from the BackendTLSPolicy targeting its Service: the SNI
    and name to verify, the trust anchors (PEM, or the system store), and the
    subjectAltNames (("Hostname" | "URI", value)) that replace the hostname check."""

    hostname: str
    ca_certificates: bytes = attrs.field(default=b"", repr=False)
    system_trust: bool = False
    subject_alt_names: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Backend:
    """One backendRef of a rule. ``invalid`` backends answer 500 for their share of
    traffic (gRPC routes: UNAVAILABLE), as the spec requires; ``endpoints`` may be
    empty (503). ``tls`` set: the gateway speaks TLS to the backend. ``http2``: the
    backend speaks HTTP/2 (every GRPCRoute backend, and Service ports with appProtocol
    ``kubernetes.io/h2c``): h2c with prior knowledge, or h2 negotiated by ALPN when
    ``tls`` is set."""

    name: str
    weight: int
    endpoints: tuple[Endpoint, ...] = ()
    invalid: bool = False
    app_protocol: str | None = None
    filters: Filters = Filters()
    tls: BackendTLS | None = None
    http2: bool = False


@attrs.frozen
class Mirror:
    """A RequestMirror filter: a copy of ``numerator``/``denominator`` of the requests
    (chosen at random) goes to ``backend``; its answers are ignored."""

    backend: Backend
    numerator: int = 1
    denominator: int = 1


@attrs.frozen
class Match:
    """One HTTPRouteMatch, or a GRPCRouteMatch in HTTP terms: every condition must
    hold. Header names are lower-case. A gRPC method match is a path match over
    ``/service/method``; a gRPC route's PathPrefix (``/service/``) is a plain string
    prefix, not a segment prefix."""

    path_type: str = "PathPrefix"
    path: str = "/"
    headers: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)
    query: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)
    method: str | None = None


@attrs.frozen
class Timeouts:
    """A rule's timeouts in seconds (GEP-1742): ``request`` from the request's start to
    the response's end, ``backend_request`` for each attempt at a backend. None: not
    set; 0: disabled."""

    request: float | None = None
    backend_request: float | None = None


@attrs.frozen
class Retry:
    """A rule's retry policy (GEP-1731): up to ``attempts`` retries after the first
    try, on the ``codes`` listed, on connection errors and on backendRequest timeouts,
    waiting at least ``backoff`` seconds before each."""

    attempts: int
    codes: tuple[int, ...] = ()
    backoff: float = 0.025


@attrs.frozen
class SessionPersistence:
    """A rule's sessionPersistence (GEP-1619): requests carrying the session's value go
    to the endpoint that answered the request which started it, while that endpoint
    is still one of the rule's. ``type``: "Cookie" or "Header", ``name`` the cookie's
    or header's (a cookie without a name gets one made from ``scope``); ``scope``
    names the rule, and a value only counts for the rule it was made for;
    ``absolute_timeout``: seconds a session lasts from its start (None: no limit).
    Cookies only: ``permanent`` (Max-Age from ``absolute_timeout``; else a session
    cookie) and ``path``, the cookie's Path."""

    type: str
    name: str
    scope: str
    absolute_timeout: float | None = None
    permanent: bool = False
    path: str = "/"


@attrs.frozen
class RateLimit:
    """A TrafficPolicy's rate limit: ``requests`` per ``period`` seconds, refilled
    evenly, in buckets of ``burst``; one bucket per key value (``key``: "ClientIP",
    "Header" with ``header`` lower-case, or "Global") within ``bucket``, the policy and
    target it counts for (every route under that target shares it)."""

    policy: str  # "namespace/name"
    bucket: str
    requests: int
    period: float
    burst: int
    key: str = "ClientIP"
    header: str | None = None


@attrs.frozen
class Compression:
    """A TrafficPolicy's response compression: the encodings offered (the server's
    preference first), the smallest Content-Length compressed, the media types."""

    policy: str
    types: tuple[str, ...]
    min_size: int
    content_types: tuple[str, ...]


@attrs.frozen
class ActiveCheck:
    """Probes of each endpoint: GET ``path`` every ``interval`` seconds, answered
    within ``timeout`` with one of ``expected_statuses``; ``unhealthy_threshold``
    failures in a row take the endpoint out of rotation, ``healthy_threshold``
    successes bring it back."""

    path: str
    interval: float = 5.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_statuses: tuple[int, ...] = (200,)


@attrs.frozen
class PassiveCheck:
    """Ejection on errors seen in traffic: ``consecutive_errors`` in a row (5xx
    answers, failed connections, resets, timeouts) take an endpoint out of rotation
    for ``ejection_time`` seconds, unless more than ``max_ejection_percent`` of its
    backend's endpoints would then be out."""

    consecutive_errors: int = 5
    ejection_time: float = 30.0
    max_ejection_percent: int = 50


@attrs.frozen
class HealthCheck:
    """A TrafficPolicy's health checks for the endpoints of the backends it reaches."""

    policy: str
    active: ActiveCheck | None = None
    passive: PassiveCheck | None = None


@attrs.frozen
class IPAccess:
    """A SecurityPolicy's client address lists (CIDRs as written): a client in
    ``deny``, or in none of a non-empty ``allow``, is answered 403."""

    policy: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@attrs.frozen
class BasicAuth:
    """A SecurityPolicy's HTTP Basic authentication: (user, htpasswd hash) pairs."""

    policy: str
    realm: str
    users: tuple[tuple[str, str], ...] = attrs.field(repr=False)


@attrs.frozen
class JWTProvider:
    """Where a JWT's signing keys come from (a JWKS from a Secret, or fetched from
    ``jwks_uri``), what its ``iss`` and ``aud`` must be (None / empty: anything), and
    which claims become request fields (claim, field name lower-case)."""

    name: str
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    jwks: str = attrs.field(default="", repr=False)
    jwks_uri: str | None = None
    claim_to_headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class JWTAuth:
    """A SecurityPolicy's JWT authentication: a bearer token any provider verifies."""

    policy: str
    providers: tuple[JWTProvider, ...]


@attrs.frozen
class ExtAuth:
    """A SecurityPolicy's external authorization over HTTP: each request's head (its
    method and target after ``path``, the fields in ``headers_to_backend``, all when
    empty; names lower-case) goes to ``backend`` first; a 2xx answer lets it through
    with the answer's ``headers_from_auth`` fields, any other is the client's answer.
    ``fail_open``: when the service cannot be reached in ``timeout`` seconds, let the
    request through (else 503)."""

    policy: str
    backend: Backend
    path: str = ""
    headers_to_backend: tuple[str, ...] = ()
    headers_from_auth: tuple[str, ...] = ()
    timeout: float = 1.0
    fail_open: bool = False


@attrs.frozen
class Policies:
    """What TrafficPolicies and SecurityPolicies do to a route's requests, each section
    from the most specific policy that sets it. ``refused``: a SecurityPolicy that
    applies could not be used; the route answers 500 rather than go unprotected."""

    rate_limit: RateLimit | None = None
    compression: Compression | None = None
    health_check: HealthCheck | None = None
    ip_access: IPAccess | None = None
    basic_auth: BasicAuth | None = None
    jwt: JWTAuth | None = None
    ext_auth: ExtAuth | None = None
    refused: str | None = None


@attrs.frozen
class Route:
    """One match of one rule, with what to do when it matches. Routes of a virtual
    host are listed in the spec's precedence order: the first that matches wins.
    ``grpc``: the rule is a GRPCRoute's, so answers the gateway makes itself (no
    backend, invalid backend) are gRPC-shaped."""

    route: str  # "namespace/name" of the HTTPRoute or GRPCRoute
    rule: int
    match: Match
    filters: Filters = Filters()
    backends: tuple[Backend, ...] = ()
    grpc: bool = False
    timeouts: Timeouts | None = None
    retry: Retry | None = None
    rule_name: str | None = None  # the rule's ``name``, if it has one
    policies: Policies | None = None
    session: SessionPersistence | None = None


@attrs.frozen
class VirtualHost:
    """Routes for one hostname ("example.com", "*.example.com" or "*")."""

    hostname: str
    routes: tuple[Route, ...] = ()


@attrs.frozen
class CertificateKey:
    """A certificate chain and its private key, PEM."""

    certificate_chain: bytes = attrs.field(repr=False)
    private_key: bytes = attrs.field(repr=False)


@attrs.frozen
class ClientValidation:
    """Frontend client-certificate validation: trust anchors (PEM) and the mode,
    ``AllowValidOnly`` or ``AllowInsecureFallback``."""

    ca_certificates: bytes = attrs.field(repr=False)
    mode: str = "AllowValidOnly"


@attrs.frozen
class ListenerTLS:
    """What a terminating listener presents and, optionally, asks of clients."""

    certificate: CertificateKey
    client_validation: ClientValidation | None = None


@attrs.frozen
class HTTPListener:
    """A Gateway listener's share of a bound port: the hostname it answers for
    (None: any), its virtual hosts, and for HTTPS its certificate. ``client_certificate``
    is the Gateway's certificate for backends that ask for one (BackendTLSPolicy)."""

    name: str  # "namespace/gateway/listener"
    gateway: str  # "namespace/gateway"
    hostname: str | None
    virtual_hosts: tuple[VirtualHost, ...] = ()
    tls: ListenerTLS | None = None
    client_certificate: CertificateKey | None = None


@attrs.frozen
class StreamRoute:
    """A TLSRoute, TCPRoute or UDPRoute rule: where its connections (or datagram
    sessions) go."""

    route: str  # "namespace/name"
    rule: int
    backends: tuple[Backend, ...] = ()


@attrs.frozen
class TLSListener:
    """A TLS listener: the ClientHello's SNI picks a route by hostname (``routes``
    most specific first, "*" for any). Without ``tls`` (Passthrough) the backend gets
    the bytes as they are; with it (Terminate) the gateway ends TLS and the backend
    gets the plaintext stream."""

    name: str
    gateway: str
    hostname: str | None
    routes: tuple[tuple[str, StreamRoute], ...] = ()
    tls: ListenerTLS | None = None
    client_certificate: CertificateKey | None = None


@attrs.frozen
class StreamListener:
    """A TCP or UDP listener: every connection (datagram session) goes to its route,
    the oldest TCPRoute (UDPRoute) attached; None: nothing attached, refused."""

    name: str
    gateway: str
    route: StreamRoute | None = None
    client_certificate: CertificateKey | None = None

    @property
    def hostname(self) -> None:
        """TCP and UDP listeners match no hostname."""
        return None


#: What a socket is known by: address, port and transport ("tcp" or "udp").
BindKey = tuple[str, int, str]


@attrs.frozen
class Bind:
    """A socket to listen on and the listeners that share it. HTTP and HTTPS binds
    hold HTTPListeners; TLS binds hold TLSListeners and may hold HTTPS listeners too
    (the ClientHello's SNI tells them apart); TCP and UDP binds one StreamListener."""

    address: str
    port: int
    protocol: str
    listeners: tuple[HTTPListener | TLSListener | StreamListener, ...] = ()

    @property
    def transport(self) -> str:
        return transport_of(self.protocol)

    @property
    def key(self) -> BindKey:
        return (self.address, self.port, self.transport)


def transport_of(protocol: str) -> str:
    """The transport a listener protocol runs on: "udp" for UDP, else "tcp"."""
    return "udp" if protocol == "UDP" else "tcp"


@attrs.frozen
class RoutingTable:
    binds: tuple[Bind, ...] = ()

    def http_routes(self) -> Iterator[Route]:
        """Every HTTP route entry of the table (a rule repeated per hostname and
        listener comes once per entry)."""
        for bind in self.binds:
            for listener in bind.listeners:
                if isinstance(listener, HTTPListener):
                    for vhost in listener.virtual_hosts:
                        yield from vhost.routes

    def as_dict(self) -> dict:
        """Plain data for the config dump; private keys are left out."""

        def redact(inst, field, value):
            if field is not None and field.name in ("private_key", "users", "jwks") and value:
                return "<redacted>"
            if isinstance(value, bytes):
                return value.decode("ascii", "replace")
            return value

        return attrs.asdict(self, value_serializer=redact)
