"""The operator's data-plane settings, handed from the supervisor to every worker."""

from __future__ import annotations

import json

import attrs

#: The environment variable a worker finds its settings' ``session_key`` in.
SESSION_KEY_ENV = "TWISTGW_SESSION_KEY"
#: What to do with a request header whose name contains "_" (``headers_with_underscores``).
UNDERSCORE_ACTIONS = ("drop", "reject", "allow")


@attrs.frozen
class DataPlaneSettings:
    """``tls_min_version``: oldest TLS version terminating listeners accept;
    ``stream_idle_timeout``: seconds a TCP or TLS stream may pass no bytes either way
    before both sides are closed; ``udp_session_timeout``: seconds a UDP session lives
    without a datagram; ``udp_max_sessions``: UDP sessions per listener and worker (the
    least recently active one is ended to make room).

    HTTP limits (exceeding one is answered and the connection closed):
    ``max_request_line``: bytes of the request line (414); ``max_header_bytes``: bytes of
    the whole request head, request line included (431); ``max_header_count``: request
    header fields (431).

    HTTP timeouts, in seconds: ``header_timeout`` from a request's first byte until its
    head is complete (408); ``idle_timeout`` a client keep-alive connection may sit idle
    between requests; ``backend_connect_timeout`` to connect to a backend (503);
    ``backend_response_timeout`` from the request being sent until the backend's
    response head, and between two reads of its body (504).

    Overload protection, per worker: ``max_connections`` client connections on all its
    sockets and ``max_connections_per_port`` on one listening socket (a connection
    beyond either is closed at once); ``backend_max_connections`` connections to one
    backend endpoint (in use or idle) and ``backend_max_pending`` requests waiting for
    one of them (a request beyond it is answered 503); ``worker_memory_limit_mb``: the
    worker's resident memory, in MB, past which it stops accepting connections and
    closes its idle keep-alive ones, until it is below 90 % of it again (0: no limit).

    HTTP/2 towards clients: ``h2_max_concurrent_streams`` open streams per connection;
    ``h2_stream_window`` and ``h2_connection_window``: bytes a client may send on one
    stream, and on the connection, before the gateway has passed them on.

    ``headers_with_underscores``: request header names with "_" are dropped ("drop"),
    answered 400 ("reject") or forwarded ("allow"). ``trusted_proxies``: comma-separated
    CIDRs whose X-Forwarded-For is believed (policies judge the address it names);
    ``rate_limit_keys``: slots of the rate-limit table the workers share;
    ``rate_limit_redis``: a Redis URL whose buckets every replica shares instead ("":
    none), and ``rate_limit_redis_failure`` what to do when it cannot answer ("open":
    let requests through, "closed": 503).
    ``filter_plugins``: the installed filter plugins PythonFilters may run, by name
    (None: all). ``proxy_protocol``: listening ports (any address) whose connections must start
    with a PROXY protocol header, version 1 or 2; its source address becomes the
    connection's peer for every protocol served there (UDP ports aside), and a
    connection without a valid header within ``header_timeout`` is closed.
    ``access_log``: path of a JSON-lines access log, "-" for stdout, "" for none.

    Tracing: ``trace_propagation``: backends get W3C trace context from the gateway (a
    span id per attempt; else the client's fields as sent); ``otlp_endpoint``: base URL
    of an OTLP/HTTP receiver the workers export spans to ("" for none);
    ``trace_sampling_ratio``: the share of traces (by trace id) whose spans are exported.

    ``session_key``: the secret (hex) that session persistence values are made and
    checked with, the same in every worker: the operator's ``--session-key-file``, else
    one the supervisor draws at start. A secret: it reaches workers in their
    environment (SESSION_KEY_ENV), never on their command line.
    """

    tls_min_version: str = "1.2"
    stream_idle_timeout: float = 3600.0
    udp_session_timeout: float = 60.0
    udp_max_sessions: int = 10000
    max_request_line: int = 16384
    max_header_bytes: int = 61440
    max_header_count: int = 100
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    backend_connect_timeout: float = 10.0
    backend_response_timeout: float = 60.0
    max_connections: int = 20000
    max_connections_per_port: int = 10000
    backend_max_connections: int = 1024
    backend_max_pending: int = 1024
    worker_memory_limit_mb: int = 0
    h2_max_concurrent_streams: int = 100
    h2_stream_window: int = 65536
    h2_connection_window: int = 1048576
    headers_with_underscores: str = "drop"
    trusted_proxies: str = ""
    rate_limit_keys: int = 131072
    rate_limit_redis: str = ""
    rate_limit_redis_failure: str = "open"
    filter_plugins: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda names: None if names is None else tuple(names)
    )
    proxy_protocol: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    access_log: str = ""
    trace_propagation: bool = False
    otlp_endpoint: str = ""
    trace_sampling_ratio: float = 0.01
    session_key: str = attrs.field(default="", repr=False)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DataPlaneSettings:
        return cls(**json.loads(text))


DEFAULT_SETTINGS = DataPlaneSettings()
