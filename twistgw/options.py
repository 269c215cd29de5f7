"""``twistd gateway`` options: the operator's configuration surface."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.python import usage

from twistgw.dataplane.redisclient import parse_url
from twistgw.extensions.filters import allowed_plugins
from twistgw.ipc.settings import UNDERSCORE_ACTIONS, DataPlaneSettings
from twistgw.sources.limits import ConfigLimits
from twistgw.translate.budget import DEFAULT_MAX_ROUTE_ENTRIES, DEFAULT_MAX_TABLE_ENTRIES
from twistgw.translate.model import TranslateOptions

DEFAULT_CONTROLLER = "gateway.twistgw.dev/controller"
DEFAULT_ADMIN = "tcp:9901:interface=127.0.0.1"

#: Numeric options that must be above zero.
POSITIVE = (
    "stream-idle-timeout",
    "udp-session-timeout",
    "udp-max-sessions",
    "max-request-line",
    "max-header-bytes",
    "max-header-count",
    "request-header-timeout",
    "idle-timeout",
    "backend-connect-timeout",
    "backend-response-timeout",
    "worker-watchdog-timeout",
    "max-connections",
    "max-connections-per-port",
    "backend-max-connections",
    "backend-max-pending",
    "http2-max-concurrent-streams",
    "config-max-file-bytes",
    "config-max-files",
    "config-max-total-bytes",
    "config-max-objects",
    "route-max-entries",
    "routing-table-max-entries",
)

#: The defaults of the config directory's limits.
_CONFIG_LIMITS = ConfigLimits()


def address_pool(cidr: str) -> tuple[str, ...]:
    """The usable addresses of a CIDR block, in order (a /32 is its one address)."""
    network = ipaddress.ip_network(cidr, strict=False)
    hosts = list(network.hosts()) or [network.network_address]
    return tuple(str(address) for address in hosts)


def _access_log(path: str) -> str:
    """The access log's path made absolute (workers need not share the supervisor's
    working directory); "-" and "" (off) as they are."""
    if path in ("", "-"):
        return path
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise usage.UsageError(f"--access-log: no directory {os.path.dirname(path)!r}")
    return path


def _otlp_endpoint(url: str) -> str:
    """The OTLP receiver's URL, checked, and the tracing extra's presence with it."""
    if not url:
        return url
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise usage.UsageError(f"--otlp-endpoint: {url!r} is not an http(s) URL")
    try:
        found = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http")
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise usage.UsageError(
            "--otlp-endpoint needs the OpenTelemetry packages: pip install 'twistgw[tracing]'"
        )
    return url


def _admin_token(path: str) -> str:
    """The admin token: the file's content, stripped; a missing or empty file is refused."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise usage.UsageError(f"--admin-token-file: cannot read {path!r}: {exc}") from exc
    if not token:
        raise usage.UsageError(f"--admin-token-file: {path!r} is empty")
    return token


#: The fewest bytes a --session-key-file must hold (a 256-bit secret, or its text).
MIN_SESSION_KEY_BYTES = 32


def _session_key(path: str) -> str:
    """The session secret as hex: the file's bytes, surrounding whitespace stripped;
    a missing file or one holding fewer than MIN_SESSION_KEY_BYTES is refused."""
    try:
        with open(path, "rb") as handle:
            secret = handle.read(65536).strip()
    except OSError as exc:
        raise usage.UsageError(f"--session-key-file: cannot read {path!r}: {exc}") from exc
    if len(secret) < MIN_SESSION_KEY_BYTES:
        raise usage.UsageError(
            f"--session-key-file: {path!r} holds {len(secret)} bytes; at least "
            f"{MIN_SESSION_KEY_BYTES} are needed (e.g. head -c 32 /dev/urandom | base64)"
        )
    return secret.hex()


class GatewayOptions(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run twistgw, a Kubernetes Gateway API gateway. Host mode (the default): Gateway "
        "API manifests from a directory in, traffic and status (admin endpoint) out. "
        "Cluster mode (--kubernetes): the Kubernetes API in, status subresources out."
    )

    optFlags = [
        [
            "kubernetes",
            "k",
            "Cluster mode: read the configuration from the Kubernetes API (in-cluster "
            "credentials, or --kubeconfig) and write statuses there.",
        ],
        [
            "trace-propagation",
            None,
            "Send backends W3C trace context of the gateway's own: a traceparent continuing "
            "the client's valid one (else a new trace) with a span id per attempt, trace ids "
            "in the access log (implied by --otlp-endpoint; without either, the client's "
            "traceparent and tracestate go on: one traceparent, the tracestate fields "
            "joined, up to 512 bytes).",
        ],
        [
            "leader-elect",
            None,
            "Cluster mode: only the replica holding the Lease writes statuses (every "
            "replica serves traffic).",
        ],
    ]

    optParameters = [
        [
            "config-dir",
            "c",
            "/etc/twistgw",
            "Directory of Kubernetes manifests (*.yaml, *.yml, *.json) to serve; watched for "
            "changes.",
        ],
        [
            "config-max-file-bytes",
            None,
            _CONFIG_LIMITS.max_file_bytes,
            "Bytes a manifest file may have (and characters of text, YAML aliases counted as "
            "copies); a larger file is refused, reported in /status, and what it held before "
            "stays in force.",
            int,
        ],
        [
            "config-max-files",
            None,
            _CONFIG_LIMITS.max_files,
            "Manifest files the config directory may hold; with more, the whole directory is "
            "refused, reported in /status, and the last configuration within the limits "
            "stays in force.",
            int,
        ],
        [
            "config-max-total-bytes",
            None,
            _CONFIG_LIMITS.max_total_bytes,
            "Bytes all manifest files may have together; with more, the whole directory is "
            "refused (as with --config-max-files).",
            int,
        ],
        [
            "config-max-objects",
            None,
            _CONFIG_LIMITS.max_objects,
            "Objects (documents; each item of a kind: List counts) all manifest files may "
            "hold together; with more, the whole directory is refused (as with "
            "--config-max-files).",
            int,
        ],
        [
            "route-max-entries",
            None,
            DEFAULT_MAX_ROUTE_ENTRIES,
            "Routing entries one route may expand into, all its parents together (listeners "
            "x hostnames x matches); a parent that would take it past this is not attached "
            "(Accepted False, UnsupportedValue).",
            int,
        ],
        [
            "routing-table-max-entries",
            None,
            DEFAULT_MAX_TABLE_ENTRIES,
            "Routing entries all routes together may expand into; the parents of the newest "
            "routes that would take the table past this are not attached (as with "
            "--route-max-entries), older routes keep theirs.",
            int,
        ],
        [
            "controller-name",
            None,
            DEFAULT_CONTROLLER,
            "GatewayClass spec.controllerName this gateway implements.",
        ],
        [
            "admin-endpoint",
            None,
            DEFAULT_ADMIN,
            "Twisted server endpoint string for the admin server (/status, /healthz, /readyz, "
            "/metrics, /config_dump).",
        ],
        [
            "admin-token-file",
            None,
            None,
            "File holding a token (read at start) that /status, /config_dump and /metrics then "
            "require as 'Authorization: Bearer TOKEN'; /healthz and /readyz stay open. Without "
            "it the admin endpoint has no authentication.",
        ],
        [
            "session-key-file",
            None,
            None,
            "File holding the secret (at least 32 bytes, read at start) that session "
            "persistence cookies and headers are made and checked with. Give every replica "
            "the same file so sessions survive restarts and move between replicas; without "
            "it each start draws a random secret, and sessions end with the gateway.",
        ],
        [
            "address-pool",
            None,
            None,
            "CIDR block of addresses for Gateways without spec.addresses, one address each; "
            "without it such Gateways bind the wildcard address.",
        ],
        [
            "watch",
            None,
            "auto",
            "How to notice config changes: auto (inotify where the platform has it, "
            "else polling) or poll (for filesystems where inotify sees nothing, e.g. NFS).",
        ],
        [
            "drain-timeout",
            None,
            30.0,
            "Seconds a stopping gateway lets requests in flight finish before it closes "
            "their connections.",
            float,
        ],
        [
            "worker-watchdog-timeout",
            None,
            10.0,
            "Seconds a worker may leave the supervisor's heartbeat unanswered (its reactor "
            "stuck) before it is killed and replaced; longer than the slowest routing-table "
            "apply.",
            float,
        ],
        [
            "tls-min-version",
            None,
            "1.2",
            "Oldest TLS version HTTPS and terminating TLS listeners accept: 1.2 or 1.3.",
        ],
        [
            "stream-idle-timeout",
            None,
            3600.0,
            "Seconds a TCP or TLS-route connection may pass no bytes either way before it "
            "is closed.",
            float,
        ],
        [
            "udp-session-timeout",
            None,
            60.0,
            "Seconds a UDP session lives without a datagram either way.",
            float,
        ],
        [
            "udp-max-sessions",
            None,
            10000,
            "UDP sessions per listener and worker; beyond it the least recently active "
            "session ends.",
            int,
        ],
        [
            "max-request-line",
            None,
            16384,
            "Bytes an HTTP request line may have; a longer one is answered 414.",
            int,
        ],
        [
            "max-header-bytes",
            None,
            61440,
            "Bytes an HTTP request head (request line and headers) may have; a larger one "
            "is answered 431.",
            int,
        ],
        [
            "max-header-count",
            None,
            100,
            "Header fields an HTTP request may have; more are answered 431.",
            int,
        ],
        [
            "request-header-timeout",
            None,
            10.0,
            "Seconds from a request's first byte until its head is complete; a slower "
            "client is answered 408 and closed.",
            float,
        ],
        [
            "idle-timeout",
            None,
            60.0,
            "Seconds a client's keep-alive HTTP connection may sit idle between requests.",
            float,
        ],
        [
            "backend-connect-timeout",
            None,
            10.0,
            "Seconds to connect to a backend; past it the request is answered 503.",
            float,
        ],
        [
            "backend-response-timeout",
            None,
            60.0,
            "Seconds from a request being sent to a backend until the backend's response "
            "head, and then between two reads of its body; past it the request is answered "
            "504 (or, once the response has begun, the client's connection is reset).",
            float,
        ],
        [
            "max-connections",
            None,
            20000,
            "Client connections a worker holds on all its listening sockets; a new one "
            "beyond it is closed at once.",
            int,
        ],
        [
            "max-connections-per-port",
            None,
            10000,
            "Client connections a worker holds on one listening socket; a new one beyond "
            "it is closed at once.",
            int,
        ],
        [
            "backend-max-connections",
            None,
            1024,
            "Connections a worker opens to one backend endpoint (in use or idle); further "
            "requests wait for one of them.",
            int,
        ],
        [
            "backend-max-pending",
            None,
            1024,
            "Requests a worker lets wait for a connection to one backend endpoint; a request "
            "beyond it, or one waiting longer than --backend-connect-timeout, is answered 503.",
            int,
        ],
        [
            "http2-max-concurrent-streams",
            None,
            100,
            "Streams an HTTP/2 client may have open at once on one connection (Envoy's "
            "default), and the most one HTTP/2 backend connection carries.",
            int,
        ],
        [
            "http2-stream-window",
            None,
            65536,
            "Bytes an HTTP/2 client may send on one stream before the gateway has passed "
            "them on (the initial stream flow-control window), 65535 to 2147483647.",
            int,
        ],
        [
            "http2-connection-window",
            None,
            1048576,
            "Bytes an HTTP/2 client may send on one connection, all streams together, "
            "before the gateway has passed them on, 65535 to 2147483647.",
            int,
        ],
        [
            "worker-memory-limit",
            None,
            0,
            "MB of resident memory past which a worker stops accepting connections and "
            "closes its idle keep-alive ones, until it is below 90 % of it again (0: off).",
            int,
        ],
        [
            "headers-with-underscores",
            None,
            "drop",
            "Request header names containing '_': drop them, reject the request (400), or "
            "allow them through.",
        ],
        [
            "trusted-proxies",
            None,
            "",
            "Comma-separated CIDRs of proxies in front of the gateway whose X-Forwarded-For "
            "is believed: a SecurityPolicy's ipAccess and a ClientIP rate limit judge the "
            "address they forwarded for (none by default: the connection's peer, which on "
            "--proxy-protocol ports is the PROXY header's source).",
        ],
        [
            "proxy-protocol",
            None,
            "",
            "Comma-separated listener ports (e.g. 8080,8443) whose connections must start "
            "with a PROXY protocol header (v1 or v2, as AWS NLB or HAProxy send it): its "
            "source address is the client for logs, X-Forwarded-For and policies, on HTTP, "
            "HTTPS, TLS and TCP listeners (not UDP); a connection without a valid header "
            "within --request-header-timeout is closed. Only for ports that nothing but the "
            "balancer can reach. Separate from --trusted-proxies (X-Forwarded-For).",
        ],
        [
            "rate-limit-keys",
            None,
            131072,
            "Rate-limit buckets the workers share (16 bytes each; a multiple of 8): the "
            "client addresses or header values counted at once before idle ones make room.",
            int,
        ],
        [
            "rate-limit-redis",
            None,
            "",
            "A Redis URL (redis://[:password@]host:port[/db], or rediss:// for TLS) whose "
            "buckets every replica of the gateway shares for TrafficPolicy rate limits "
            "(none by default: the workers of this gateway share theirs in memory).",
        ],
        [
            "rate-limit-redis-failure",
            None,
            "open",
            "When Redis cannot answer in time: 'open' lets the request through, 'closed' "
            "answers 503 (both counted in twistgw_rate_limit_store_failures_total).",
        ],
        [
            "filter-plugins",
            None,
            None,
            "Comma-separated names of the installed filter plugins PythonFilters may run "
            "(`twistgw plugins` lists them); all installed ones by default, '' for none.",
        ],
        [
            "access-log",
            None,
            None,
            "File to write an access log to, one JSON object per request ('-': standard "
            "output); none by default.",
        ],
        [
            "otlp-endpoint",
            None,
            None,
            "Base URL of an OpenTelemetry OTLP/HTTP receiver (e.g. http://127.0.0.1:4318) "
            "to export a span per request and per backend attempt to, at /v1/traces; needs "
            "the tracing extra (pip install twistgw[tracing]); implies --trace-propagation.",
        ],
        [
            "trace-sampling-ratio",
            None,
            0.01,
            "Share of traces, 0 to 1 and chosen by trace id, whose spans go to "
            "--otlp-endpoint (each exported request costs the worker more than proxying it).",
            float,
        ],
        [
            "kubeconfig",
            None,
            None,
            "Cluster mode: kubeconfig file to use instead of in-cluster credentials.",
        ],
        [
            "leader-election-namespace",
            None,
            None,
            "Namespace of the leader Lease (default: $POD_NAMESPACE, else twistgw-system).",
        ],
        ["leader-election-name", None, "twistgw-leader", "Name of the leader Lease."],
        [
            "lease-duration",
            None,
            15.0,
            "Seconds a leader's Lease lasts without renewal before another replica may take it.",
            float,
        ],
        [
            "publish-service",
            None,
            None,
            "Cluster mode: NAMESPACE/NAME of the Service in front of the gateway; its load "
            "balancer addresses (else its cluster IP) are reported as each Gateway's "
            "status.addresses.",
        ],
        [
            "workers",
            "w",
            None,
            "Worker processes serving traffic (default: the number of CPUs).",
            int,
        ],
    ]

    def postOptions(self) -> None:
        if not self["kubernetes"]:
            if not os.path.isdir(self["config-dir"]):
                raise usage.UsageError(f"--config-dir {self['config-dir']!r} is not a directory")
            for option in ("kubeconfig", "publish-service"):
                if self[option]:
                    raise usage.UsageError(f"--{option} needs cluster mode (--kubernetes)")
            if self["leader-elect"]:
                raise usage.UsageError("--leader-elect needs cluster mode (--kubernetes)")
        if self["publish-service"]:
            namespace, _, name = self["publish-service"].partition("/")
            if not namespace or not name:
                raise usage.UsageError("--publish-service must be NAMESPACE/NAME")
            self["publish-service"] = (namespace, name)
        if not self["leader-election-namespace"]:
            self["leader-election-namespace"] = os.environ.get("POD_NAMESPACE", "twistgw-system")
        if self["lease-duration"] <= 0:
            raise usage.UsageError("--lease-duration must be positive")
        if self["address-pool"]:
            try:
                self["address-pool"] = address_pool(self["address-pool"])
            except ValueError as exc:
                raise usage.UsageError(f"--address-pool: {exc}") from exc
        else:
            self["address-pool"] = ()
        if self["tls-min-version"] not in ("1.2", "1.3"):
            raise usage.UsageError("--tls-min-version must be 1.2 or 1.3")
        for name in POSITIVE:
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be positive")
        for name in ("http2-stream-window", "http2-connection-window"):
            if not 65535 <= self[name] <= 2**31 - 1:
                raise usage.UsageError(f"--{name} must be from 65535 to 2147483647")
        if self["worker-memory-limit"] < 0:
            raise usage.UsageError("--worker-memory-limit must be 0 (off) or positive")
        if self["max-header-bytes"] < self["max-request-line"]:
            raise usage.UsageError(
                "--max-header-bytes must be at least --max-request-line (the request line is "
                "part of the head)"
            )
        if self["config-max-total-bytes"] < self["config-max-file-bytes"]:
            raise usage.UsageError(
                "--config-max-total-bytes must be at least --config-max-file-bytes"
            )
        if self["routing-table-max-entries"] < self["route-max-entries"]:
            raise usage.UsageError(
                "--routing-table-max-entries must be at least --route-max-entries"
            )
        if self["headers-with-underscores"] not in UNDERSCORE_ACTIONS:
            raise usage.UsageError(
                f"--headers-with-underscores must be one of {', '.join(UNDERSCORE_ACTIONS)}"
            )
        self["proxy-protocol"] = _ports("--proxy-protocol", self["proxy-protocol"] or "")
        self["trusted-proxies"] = _networks("--trusted-proxies", self["trusted-proxies"] or "")
        keys = self["rate-limit-keys"]
        if keys < 8 or keys % 8 or keys > 1 << 26:
            raise usage.UsageError("--rate-limit-keys must be a multiple of 8 up to 67108864")
        plugins = self["filter-plugins"]
        if plugins is not None:
            self["filter-plugins"] = tuple(p.strip() for p in plugins.split(",") if p.strip())
        if self["rate-limit-redis-failure"] not in ("open", "closed"):
            raise usage.UsageError("--rate-limit-redis-failure must be open or closed")
        if self["rate-limit-redis"]:
            try:
                parse_url(self["rate-limit-redis"])
            except ValueError as exc:
                raise usage.UsageError(f"--rate-limit-redis: {exc}") from None
        self["access-log"] = _access_log(self["access-log"] or "")
        self["otlp-endpoint"] = _otlp_endpoint(self["otlp-endpoint"] or "")
        if not 0.0 <= self["trace-sampling-ratio"] <= 1.0:
            raise usage.UsageError("--trace-sampling-ratio must be from 0 to 1")
        token_file = self["admin-token-file"]
        self["admin-token"] = _admin_token(token_file) if token_file else None
        key_file = self["session-key-file"]
        self["session-key"] = _session_key(key_file) if key_file else ""
        if self["watch"] not in ("auto", "poll"):
            raise usage.UsageError("--watch must be auto or poll")
        if self["workers"] is None:
            self["workers"] = os.cpu_count() or 1
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be at least 1")


def data_plane_settings(options: Mapping[str, Any]) -> DataPlaneSettings:
    """The workers' settings from parsed ``GatewayOptions``."""
    return DataPlaneSettings(
        tls_min_version=options["tls-min-version"],
        stream_idle_timeout=options["stream-idle-timeout"],
        udp_session_timeout=options["udp-session-timeout"],
        udp_max_sessions=options["udp-max-sessions"],
        max_request_line=options["max-request-line"],
        max_header_bytes=options["max-header-bytes"],
        max_header_count=options["max-header-count"],
        header_timeout=options["request-header-timeout"],
        idle_timeout=options["idle-timeout"],
        backend_connect_timeout=options["backend-connect-timeout"],
        backend_response_timeout=options["backend-response-timeout"],
        max_connections=options["max-connections"],
        max_connections_per_port=options["max-connections-per-port"],
        backend_max_connections=options["backend-max-connections"],
        backend_max_pending=options["backend-max-pending"],
        h2_max_concurrent_streams=options["http2-max-concurrent-streams"],
        h2_stream_window=options["http2-stream-window"],
        h2_connection_window=options["http2-connection-window"],
        worker_memory_limit_mb=options["worker-memory-limit"],
        headers_with_underscores=options["headers-with-underscores"],
        trusted_proxies=options["trusted-proxies"],
        rate_limit_keys=options["rate-limit-keys"],
        rate_limit_redis=options["rate-limit-redis"] or "",
        rate_limit_redis_failure=options["rate-limit-redis-failure"],
        filter_plugins=options["filter-plugins"],
        proxy_protocol=options["proxy-protocol"],
        access_log=options["access-log"],
        trace_propagation=bool(options["trace-propagation"] or options["otlp-endpoint"]),
        otlp_endpoint=options["otlp-endpoint"],
        trace_sampling_ratio=options["trace-sampling-ratio"],
        session_key=options.get("session-key") or "",
    )


def _networks(option: str, text: str) -> str:
    """A comma-separated list of CIDRs, checked and normalised."""
    found = []
    for part in text.split(","):
        if part.strip():
            try:
                found.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise usage.UsageError(f"{option}: {part.strip()!r} is not a CIDR") from None
    return ",".join(found)


def _ports(option: str, text: str) -> tuple[int, ...]:
    """A comma-separated list of ports, checked, without repeats, in order."""
    found = set()
    for part in text.split(","):
        part = part.strip()
        if part:
            if not part.isascii() or not part.isdigit() or not 1 <= int(part) <= 65535:
                raise usage.UsageError(f"{option}: {part!r} is not a port (1 to 65535)")
            found.add(int(part))
    return tuple(sorted(found))


def config_limits(options: Mapping[str, Any]) -> ConfigLimits:
    """The config directory's limits from parsed ``GatewayOptions``."""
    return ConfigLimits(
        max_file_bytes=options["config-max-file-bytes"],
        max_files=options["config-max-files"],
        max_total_bytes=options["config-max-total-bytes"],
        max_objects=options["config-max-objects"],
    )


def translate_options(options: Mapping[str, Any]) -> TranslateOptions:
    """The translator's settings from parsed ``GatewayOptions``."""
    return TranslateOptions(
        controller_name=options["controller-name"],
        address_pool=tuple(options["address-pool"]),
        publish_service=options["publish-service"] or None,
        max_route_entries=options["route-max-entries"],
        max_table_entries=options["routing-table-max-entries"],
        filter_plugins={
            name: plugin.config_schema
            for name, plugin in allowed_plugins(options["filter-plugins"]).items()
        },
    )
