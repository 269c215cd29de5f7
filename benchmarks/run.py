"""twistgw benchmarks: the same load against twistgw and reference proxies, in
interleaved rounds (A, B, A, B, ...) so that a busy machine affects all alike.

    .venv/bin/python benchmarks/run.py                      # every scenario
    .venv/bin/python benchmarks/run.py --scenarios scaling  # 1 vs 2 workers
    .venv/bin/python benchmarks/run.py --rounds 5 --duration 10
    .venv/bin/python benchmarks/run.py --scenarios h2c,h2c-few,h2,h2-few,grpc

Origin: nginx with a fixed response when installed, else benchmarks/origin.py. Load:
wrk when installed, else benchmarks/loadgen.py (much slower; the report says which);
the HTTP/2 scenarios need h2load (nghttp2-client), and are skipped without it.
Reference proxy: nginx with 2 workers and upstream keep-alive, when installed (for the
TLS scenarios terminating TLS with the same ECDSA P-256 certificate as twistgw; for
the HTTP/2 ones with HTTP/2 on its listener, the upstream still HTTP/1.1).
Loopback only; it starts and stops its own processes and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

HERE = os.path.dirname(os.path.abspath(__file__))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / CLK_TCK


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen
    scheme: str = "http"
    #: request fields its load carries ("Name: value"): credentials its policies want
    fields: tuple[str, ...] = ()

    def pids(self) -> list[int]:
        return tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _spawn(
    command: list[str], log_path: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )


NGINX_ORIGIN = """
worker_processes 1;
daemon off;
pid {dir}/origin.pid;
error_log {dir}/origin-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /big {{ alias {dir}/big.bin; }}
    location / {{ return 200 "hello, world\\n"; }}
  }}
}}
"""

NGINX_PROXY = """
worker_processes 2;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
  server {{
{listen}
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


def start_origin(workdir: str) -> Service:
    port = free_port()
    nginx = find_nginx()
    if nginx:
        big = os.path.join(workdir, "big.bin")
        with open(big, "wb") as handle:
            handle.write(b"x" * (1024 * 1024))
        os.chmod(workdir, 0o755)  # nginx's workers run as an unprivileged user
        os.chmod(big, 0o644)
        conf = os.path.join(workdir, "origin.conf")
        with open(conf, "w") as handle:
            handle.write(NGINX_ORIGIN.format(dir=workdir, port=port))
        process = _spawn([nginx, "-c", conf, "-p", workdir], os.path.join(workdir, "origin.log"))
        name = "nginx"
    else:
        process = _spawn(
            [sys.executable, os.path.join(HERE, "origin.py"), str(port)],
            os.path.join(workdir, "origin.log"),
        )
        name = "benchmarks/origin.py"
    wait_port(port)
    return Service(name, port, process)


NGINX_LISTEN = "    listen 127.0.0.1:{port}{http2} backlog=4096;"
NGINX_TLS_LISTEN = """    listen 127.0.0.1:{port} ssl{http2} backlog=4096;
    ssl_certificate {dir}/tls.crt;
    ssl_certificate_key {dir}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;"""
#: nginx in front of the gRPC backend: HTTP/2 (h2c) on both sides.
NGINX_GRPC = """
worker_processes 2;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{origin}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} http2 backlog=4096;
    location / {{ grpc_pass grpc://backend; }}
  }}
}}
"""


def certificate_files(workdir: str) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 certificate and key (PEM), made once per run and kept
    as ``tls.crt`` and ``tls.key`` in ``workdir``: both proxies present the same one."""
    paths = os.path.join(workdir, "tls.crt"), os.path.join(workdir, "tls.key")
    if all(os.path.exists(path) for path in paths):
        with open(paths[0], "rb") as cert, open(paths[1], "rb") as key:
            return cert.read(), key.read()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.example.com")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for path, data in zip(paths, (cert_pem, key_pem), strict=True):
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o644)  # nginx's workers run as an unprivileged user
    return cert_pem, key_pem


def start_nginx_proxy(
    workdir: str, origin: Service, tls: bool = False, http2: bool = False, grpc: bool = False
) -> Service | None:
    """nginx in front of ``origin``: HTTP/1.1 (``http2``: HTTP/2, h2c with prior
    knowledge or h2 by ALPN with ``tls``) towards clients, HTTP/1.1 towards the origin;
    ``grpc``: h2c on both sides (grpc_pass)."""
    nginx = find_nginx()
    if not nginx:
        return None
    port = free_port()
    name = "proxy" + "-tls" * tls + "-h2" * http2 + "-grpc" * grpc
    if tls:
        certificate_files(workdir)
    if grpc:
        text = NGINX_GRPC.format(dir=workdir, name=name, port=port, origin=origin.port)
    else:
        listen = (NGINX_TLS_LISTEN if tls else NGINX_LISTEN).format(
            dir=workdir, port=port, http2=" http2" if http2 else ""
        )
        text = NGINX_PROXY.format(dir=workdir, name=name, listen=listen, origin=origin.port)
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as handle:
        handle.write(text)
    process = _spawn([nginx, "-c", conf, "-p", workdir], os.path.join(workdir, f"{name}.log"))
    wait_port(port)
    what = ", TLS" * tls + ", HTTP/2" * http2 + ", grpc_pass" * grpc
    return Service(f"nginx (2 workers{what})", port, process, "https" if tls else "http")


def start_reverse_proxy_resource(workdir: str, origin: Service) -> Service:
    port = free_port()
    process = _spawn(
        [
            sys.executable,
            os.path.join(HERE, "reverse_proxy_resource.py"),
            str(port),
            str(origin.port),
        ],
        os.path.join(workdir, "rpr.log"),
    )
    wait_port(port)
    return Service("twisted.web ReverseProxyResource (1 process)", port, process)


LISTENERS = {
    "http": "{{name: http, port: {port}, protocol: HTTP}}",
    "tls": "{{name: https, port: {port}, protocol: HTTPS, "
    "tls: {{certificateRefs: [{{name: bench-cert}}]}}}}",
    "tcp": "{{name: tcp, port: {port}, protocol: TCP}}",
    "udp": "{{name: udp, port: {port}, protocol: UDP}}",
}


def _stream_route(kind: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: {kind}
metadata: {{name: origin, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules: [{{backendRefs: [{{name: origin, port: 80}}]}}]
"""


def _grpc_route() -> str:
    """A GRPCRoute sending every call to the origin (reached over h2c)."""
    return """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: origin, port: 80}]}]
"""


def _http_routes(routes: int) -> list[str]:
    """``routes`` HTTPRoutes, each on its own path prefix; the last one, ``/``, is the
    one the load hits unless it asks for another."""
    documents = [
        f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route-{index}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /r{index}/}}}}]
    backendRefs: [{{name: origin, port: 80}}]
"""
        for index in range(routes - 1)
    ]
    documents.append("""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: origin, port: 80}]}]
""")
    return documents


def policy_documents(policy: str) -> tuple[list[str], tuple[str, ...]]:
    """The manifests of one policy on the whole Gateway (``POLICIES``), and the request
    fields the load needs to pass it."""
    if policy == "ratelimit":
        spec = "rateLimit: {requests: 1000000000, unit: Second, key: {type: ClientIP}}"
        return [_policy("TrafficPolicy", spec)], ()
    if policy == "ipaccess":
        return [_policy("SecurityPolicy", "ipAccess: {allow: [10.0.0.0/8, 127.0.0.0/8]}")], ()
    if policy == "basic":
        entry = bcrypt.hashpw(b"bench", bcrypt.gensalt(rounds=10)).decode()
        secret = f"""
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: default}}
stringData: {{.htpasswd: "bench:{entry}"}}
"""
        spec = "basicAuth: {secretRef: {name: users}}"
        token = base64.b64encode(b"bench:bench").decode()
        return [secret, _policy("SecurityPolicy", spec)], (f"Authorization: Basic {token}",)
    if policy == "filter":  # (the catch-all route gets it: see twistgw_config)
        document = """
apiVersion: gateway.twistgw.dev/v1alpha1
kind: PythonFilter
metadata: {name: noop, namespace: default}
spec: {plugin: test-noop}
"""
        return [document], ()
    if policy == "jwt":
        key = ECKey.generate_key("P-256", parameters={"kid": "bench"}, private=True)
        jwks = json.dumps(KeySet([key]).as_dict(private=False))
        claims = {"iss": "https://bench", "sub": "bench", "exp": int(time.time()) + 86400}
        token = jwt.encode({"alg": "ES256", "kid": "bench"}, claims, key)
        secret = f"""
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: default}}
stringData: {{jwks: '{jwks}'}}
"""
        spec = (
            "jwt: {providers: [{name: bench, issuer: https://bench, "
            "jwks: {secretRef: {name: keys}}, claimToHeaders: [{claim: sub, header: X-User}]}]}"
        )
        return [secret, _policy("SecurityPolicy", spec)], (f"Authorization: Bearer {token}",)
    raise ValueError(policy)


def _policy(kind: str, spec: str) -> str:
    return f"""
apiVersion: gateway.twistgw.dev/v1alpha1
kind: {kind}
metadata: {{name: bench, namespace: default}}
spec:
  targetRefs: [{{kind: Gateway, name: bench}}]
  {spec}
"""


#: What ``twistgw:W:R:POLICY`` targets attach to the Gateway (see policy_documents);
#: "filter": a no-op filter plugin (tests/support/filterplugins) on the route the load hits.
POLICIES = ("ratelimit", "ipaccess", "basic", "jwt", "filter")
FILTER_PLUGINS = os.path.join(HERE, "..", "tests", "support", "filterplugins")


def twistgw_config(
    directory: str, port: int, origin: Service, routes: int, mode: str, policy: str = ""
) -> tuple[str, ...]:
    """A Gateway on 127.0.0.1:port whose one listener is of ``mode`` (http, tls, tcp,
    udp or grpc) in front of the origin: ``routes`` HTTPRoutes for http and tls, one
    TCPRoute or UDPRoute, or for grpc an HTTP listener with one GRPCRoute; with
    ``policy``, that policy on the Gateway. Returns the fields the load must send."""
    os.makedirs(directory, exist_ok=True)
    secret = ""
    if mode == "tls":
        cert_pem, key_pem = certificate_files(os.path.dirname(directory))
        secret = f"""
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: bench-cert, namespace: default}}
data:
  tls.crt: {base64.b64encode(cert_pem).decode()}
  tls.key: {base64.b64encode(key_pem).decode()}
"""
    documents = [
        f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: bench}}
spec: {{controllerName: gateway.twistgw.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: bench
  addresses: [{{value: 127.0.0.1}}]
  listeners: [{LISTENERS["http" if mode == "grpc" else mode].format(port=port)}]{secret}
---
apiVersion: v1
kind: Service
metadata: {{name: origin, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: origin, namespace: default, labels: {{kubernetes.io/service-name: origin}}}}
addressType: IPv4
ports: [{{name: http, port: {origin.port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"""
    ]
    if mode == "tcp":
        documents.append(_stream_route("TCPRoute"))
    elif mode == "udp":
        documents.append(_stream_route("UDPRoute"))
    elif mode == "grpc":
        documents.append(_grpc_route())
    else:
        documents += _http_routes(routes)
    fields: tuple[str, ...] = ()
    if policy:
        policies, fields = policy_documents(policy)
        documents += policies
    if policy == "filter":
        documents[-len(policies) - 1] = documents[-len(policies) - 1].replace(
            "rules: [{backendRefs: [{name: origin, port: 80}]}]",
            "rules: [{filters: [{type: ExtensionRef, extensionRef: "
            "{group: gateway.twistgw.dev, kind: PythonFilter, name: noop}}], "
            "backendRefs: [{name: origin, port: 80}]}]",
        )
    with open(os.path.join(directory, "bench.yaml"), "w") as handle:
        handle.write("---".join(documents))
    return fields


def start_twistgw(
    workdir: str,
    origin: Service,
    workers: int,
    routes: int = 10,
    mode: str = "http",
    access_log: bool = False,
    policy: str = "",
) -> Service:
    port, admin = free_port(), free_port()
    plural = "s" if workers > 1 else ""
    what = {
        "http": f"{routes} routes",
        "tls": f"{routes} routes, TLS",
        "grpc": "a GRPCRoute",
    }.get(mode, mode.upper())
    if policy:
        what += f", {policy} policy"
    name = f"twistgw ({workers} worker{plural}, {what}{', access log' if access_log else ''})"
    config = os.path.join(
        workdir,
        f"twistgw-{workers}-{routes}-{mode}{'-log' * access_log}{'-' * bool(policy)}{policy}",
    )
    fields = twistgw_config(config, port, origin, routes, mode, policy)
    extra = ["--access-log", config + ".access.log"] if access_log else []
    process = _spawn(
        [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            "gateway",
            "--config-dir",
            config,
            "--admin-endpoint",
            f"tcp:{admin}:interface=127.0.0.1",
            "--workers",
            str(workers),
            *extra,
        ],
        config + ".log",
        env={**os.environ, "PYTHONPATH": FILTER_PLUGINS} if policy == "filter" else None,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{name} did not become ready; see {config}.log")
    return Service(name, port, process, "https" if mode == "tls" else "http", fields)


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    mib_per_second: float = 0.0
    requests: int = 0


def _ms(text: str) -> float:
    found = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"unexpected latency {text!r} in the load generator's output")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def drive(target: Service, path: str, connections: int, duration: float, close: bool) -> Round:
    url = f"{target.scheme}://127.0.0.1:{target.port}{path}"
    fields = target.fields
    wrk = shutil.which("wrk")
    if wrk:
        command = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            url,
        ]
        if close:
            command[1:1] = ["-H", "Connection: close"]
        for field in fields:
            command[1:1] = ["-H", field]
    else:
        command = [
            sys.executable,
            os.path.join(HERE, "loadgen.py"),
            url,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ] + (["--close"] if close else [])
        for field in fields:
            command += ["--header", field]
    pids = target.pids()
    cpu_before = cpu_seconds(pids)
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout
    if "Requests/sec" not in output or "50%" not in output:
        raise RuntimeError(f"unexpected load generator output for {target.name}:\n{output}")
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{target.name} answered with errors:\n{output}")
    cpu = cpu_seconds(pids) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", output, re.M).group(1))
    requests = max(1.0, rps * duration)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    mib = 0.0
    if transfer:
        mib = float(transfer.group(1)) * {
            "B": 1 / 1048576,
            "KB": 1 / 1024,
            "MB": 1,
            "GB": 1024,
        }.get(transfer.group(2), 0)
    return Round(rps, p50, p99, cpu / requests * 1e6, mib)


def drive_h2(
    target: Service,
    path: str,
    connections: int,
    streams: int,
    duration: float,
    body: str | None = None,
    headers: tuple[str, ...] = (),
) -> Round:
    """A round of h2load (one thread): ``connections`` HTTP/2 connections (h2c with
    prior knowledge, or h2 by ALPN over TLS) with ``streams`` requests in flight on
    each; POSTs of the file ``body`` if given. Latency percentiles come from h2load's
    per-request log (h2load itself reports only the mean and spread)."""
    url = f"{target.scheme}://127.0.0.1:{target.port}{path}"
    seconds = max(1, round(duration))
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command = [
            shutil.which("h2load") or "h2load",
            f"-c{connections}",
            f"-m{streams}",
            f"-D{seconds}",
            "--log-file",
            log.name,
        ]
        if body is not None:
            command += ["-d", body]
        for header in headers:
            command += ["-H", header]
        command.append(url)
        pids = target.pids()
        cpu_before = cpu_seconds(pids)
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60
        ).stdout
        cpu = cpu_seconds(pids) - cpu_before
        finished = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
        counts = re.search(
            r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
            r"(\d+) errored, (\d+) timeout",
            output,
        )
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
        if finished is None or counts is None or codes is None:
            raise RuntimeError(f"unexpected h2load output for {target.name}:\n{output}")
        done, succeeded, failed, errored, timeouts = map(int, counts.groups())
        others = sum(map(int, codes.groups()[1:]))  # (2xx may count one still in flight)
        if not done or failed or errored or timeouts or others:
            raise RuntimeError(f"{target.name} answered with errors:\n{output}")
        times = sorted(int(line.split()[2]) for line in log.read().splitlines() if line.strip())
    return Round(
        float(finished.group(1)),
        times[len(times) // 2] / 1000,
        times[min(len(times) - 1, len(times) * 99 // 100)] / 1000,
        cpu / done * 1e6,
        requests=done,
    )


def idle_memory(target: Service, connections: int) -> tuple[list[float], float, float]:
    """(RSS of each process, their total, and the total's growth, in MB) when
    ``connections`` keep-alive connections each made one request and went idle. The
    first process is the parent (twistgw's supervisor, nginx's master)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pids = target.pids()
    per_process = [rss_mb([pid]) for pid in pids]
    before = sum(per_process)
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    sockets = []
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", target.port))
            sock.sendall(request)
            sockets.append(sock)
        for sock in sockets:  # read every answer: each connection is now idle
            received = b""
            while b"\r\n\r\n" not in received or not received.endswith(b"\n"):
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
        time.sleep(1.0)
        after = rss_mb(target.pids())
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return per_process, before, after - before


@dataclass
class Scenario:
    name: str
    description: str
    path: str = "/"
    connections: int = 64
    close: bool = False
    targets: tuple[str, ...] = ("twistgw:2", "nginx")
    streams: int = 0  # HTTP/2 (h2load): requests in flight on each connection


SCENARIOS = {
    "scaling": Scenario(
        "scaling",
        "keep-alive, small responses: 1 vs 2 twistgw workers",
        targets=("twistgw:1", "twistgw:2"),
    ),
    "keepalive": Scenario(
        "keepalive",
        "keep-alive, small responses, 64 connections",
        targets=("twistgw:2", "nginx", "rpr"),
    ),
    "accesslog": Scenario(
        "accesslog",
        "keep-alive, small responses, 64 connections: access log off vs on (to a file)",
        targets=("twistgw:2", "twistgw:2:10:log"),
    ),
    "policies": Scenario(
        "policies",
        "keep-alive, small responses, 64 connections: no policy, then each of: a rate "
        "limit per client address (never reached), an IP allow list, Basic auth (bcrypt, "
        "remembered), JWT (ES256 from a Secret), on the whole Gateway; and a no-op filter "
        "plugin on the route",
        targets=(
            "twistgw:2",
            "twistgw:2:10:ratelimit",
            "twistgw:2:10:ipaccess",
            "twistgw:2:10:basic",
            "twistgw:2:10:jwt",
            "twistgw:2:10:filter",
        ),
    ),
    "close": Scenario("close", "a new connection per request, small responses", close=True),
    "big": Scenario(
        "big", "keep-alive, 1 MiB responses, 16 connections", path="/big", connections=16
    ),
    "routes": Scenario(
        "routes",
        "keep-alive, small responses: 10 vs 1,000 HTTPRoutes",
        targets=("twistgw:2", "twistgw:2:1000"),
    ),
    "tls": Scenario(
        "tls",
        "keep-alive HTTPS, small responses, 64 connections (plain HTTP beside it)",
        targets=("twistgw:2:10:tls", "nginx:tls", "twistgw:2", "nginx"),
    ),
    "handshakes": Scenario(
        "handshakes",
        "a new TLS connection (full handshake) per request: handshakes/s",
        close=True,
        targets=("twistgw:2:10:tls", "nginx:tls"),
    ),
    "tcp": Scenario(
        "tcp",
        "TCP throughput: 1 MiB responses through a TCP listener against the origin "
        "straight, 16 connections",
        path="/big",
        connections=16,
        targets=("twistgw:2:10:tcp", "direct"),
    ),
    "udp": Scenario(
        "udp",
        "UDP datagrams/s: 32 client sockets with 8 datagrams of 64 bytes in flight each, "
        "through a UDP listener against the echo backend straight",
        targets=("twistgw:2:udp", "direct:udp"),
    ),
    "h2c": Scenario(
        "h2c",
        "HTTP/2 with prior knowledge (h2c), small responses, 16 connections × 32 streams",
        connections=16,
        streams=32,
        targets=("twistgw:2", "nginx:h2c"),
    ),
    "h2c-few": Scenario(
        "h2c-few",
        "HTTP/2 with prior knowledge (h2c), small responses, 2 connections × 100 streams",
        connections=2,
        streams=100,
        targets=("twistgw:2", "nginx:h2c"),
    ),
    "h2": Scenario(
        "h2",
        "HTTP/2 over TLS (ALPN h2), small responses, 16 connections × 32 streams",
        connections=16,
        streams=32,
        targets=("twistgw:2:10:tls", "nginx:h2"),
    ),
    "h2-few": Scenario(
        "h2-few",
        "HTTP/2 over TLS (ALPN h2), small responses, 2 connections × 100 streams",
        connections=2,
        streams=100,
        targets=("twistgw:2:10:tls", "nginx:h2"),
    ),
    "grpc": Scenario(
        "grpc",
        "gRPC unary calls (13-byte messages, h2load over h2c), 16 connections × 32 streams: "
        "through a GRPCRoute, through nginx's grpc_pass, and straight to the grpcio backend",
        path="/bench.Echo/Unary",
        connections=16,
        streams=32,
        targets=("twistgw:2:grpc", "nginx:grpc", "direct:grpc"),
    ),
    "idle": Scenario(
        "idle",
        "memory: 10,000 idle keep-alive connections, on freshly started proxies",
        connections=10000,
        targets=("twistgw:2:10:fresh", "nginx:fresh"),
    ),
}


def udp_rate(address: str, port: int, duration: float) -> tuple[float, int]:
    """(answered datagrams/s, datagrams lost) from benchmarks/udp.py's load generator."""
    output = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "udp.py"),
            "load",
            address,
            str(port),
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    rate = re.search(r"Datagrams/sec:\s+([\d.]+)", output)
    lost = re.search(r"Lost:\s+(\d+)", output)
    if rate is None or lost is None:
        raise RuntimeError(f"unexpected UDP load generator output:\n{output}")
    return float(rate.group(1)), int(lost.group(1))


def udp_report(
    scenario: Scenario, workdir: str, started: list[Service], rounds: int, duration: float
) -> str:
    """Datagrams/s through twistgw's UDP listener and straight to the echo backend."""
    port = free_port()
    echo = Service(
        "benchmarks/udp.py echo",
        port,
        _spawn(
            [sys.executable, os.path.join(HERE, "udp.py"), "echo", str(port)],
            os.path.join(workdir, "udp-echo.log"),
        ),
    )
    started.append(echo)
    gateway = start_twistgw(workdir, echo, 2, mode="udp")
    started.append(gateway)
    targets = {gateway.name: gateway, "echo backend straight": echo}
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in targets}
    time.sleep(0.5)
    for _ in range(rounds):
        for name, target in targets.items():
            pids = target.pids()
            before = cpu_seconds(pids)
            rate, lost = udp_rate("127.0.0.1", target.port, duration)
            cpu = (cpu_seconds(pids) - before) / max(1.0, rate * duration) * 1e6
            results[name].append((rate, lost, cpu))
    lines = [
        f"### {scenario.name}: {scenario.description}",
        "",
        "| target | datagrams/s median (min–max) | lost per round | CPU µs/datagram | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = statistics.median(r[0] for r in results["echo backend straight"])
    for name, rows in results.items():
        rates = [r[0] for r in rows]
        median = statistics.median(rates)
        lines.append(
            f"| {name} | {median:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{statistics.median(r[1] for r in rows):.0f} | "
            f"{statistics.median(r[2] for r in rows):.0f} | {median / base:.2f}× |"
        )
    return "\n".join(lines)


def grpc_report(
    scenario: Scenario, workdir: str, started: list[Service], rounds: int, duration: float
) -> str:
    """Unary calls/s through twistgw (a GRPCRoute), through nginx (grpc_pass) and
    straight to benchmarks/grpc_backend.py, driven by h2load. h2load sees only HTTP
    statuses (a gRPC error is a 200 too), so each round is checked against the calls
    the backend counted."""
    import grpc
    from grpc_backend import MESSAGE, SERVICE, count, frame

    port = free_port()
    backend = Service(
        "grpcio backend straight (aio server, 1 process)",
        port,
        _spawn(
            [sys.executable, os.path.join(HERE, "grpc_backend.py"), str(port)],
            os.path.join(workdir, "grpc-backend.log"),
        ),
    )
    started.append(backend)
    wait_port(port)
    targets = [start_twistgw(workdir, backend, 2, mode="grpc")]
    started.append(targets[0])
    proxy = start_nginx_proxy(workdir, backend, grpc=True)
    if proxy is not None:
        started.append(proxy)
        targets.append(proxy)
    targets.append(backend)
    body = os.path.join(workdir, "grpc-request.bin")
    with open(body, "wb") as handle:
        handle.write(frame(MESSAGE))
    method = f"/{SERVICE}/Unary"
    for target in targets:  # a real gRPC client first: the route works, trailers and all
        with grpc.insecure_channel(f"127.0.0.1:{target.port}") as channel:
            answer = channel.unary_unary(method)(MESSAGE, timeout=10)
        if answer != MESSAGE:
            raise RuntimeError(f"{target.name} answered {answer!r} to a gRPC call")
    headers = ("content-type: application/grpc", "te: trailers")
    load = (scenario.connections, scenario.streams)
    results: dict[str, list[Round]] = {target.name: [] for target in targets}
    for target in targets:  # warm up
        drive_h2(target, method, *load, 1.0, body, headers)
    for _ in range(rounds):
        for target in targets:
            before = count(port)
            result = drive_h2(target, method, *load, duration, body, headers)
            served = count(port) - before
            if served < result.requests:
                raise RuntimeError(
                    f"{target.name}: h2load saw {result.requests} answers, "
                    f"the backend served {served} calls"
                )
            results[target.name].append(result)
    return report(scenario, results, backend.name)


def report(scenario: Scenario, results: dict[str, list[Round]], reference: str | None) -> str:
    lines = [
        f"### {scenario.name}: {scenario.description}",
        "",
        "| target | requests/s median (min–max) | p50 ms | p99 ms | CPU µs/request | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    medians = {name: statistics.median(r.rps for r in rounds) for name, rounds in results.items()}
    base = medians.get(reference) if reference else None
    for name, rounds in results.items():
        rps = [r.rps for r in rounds]
        ratio = f"{medians[name] / base:.2f}×" if base else ""
        extra = ""
        if scenario.path == "/big":
            extra = f" ({statistics.median(r.mib_per_second for r in rounds):,.0f} MiB/s)"
        lines.append(
            f"| {name} | {medians[name]:,.0f} ({min(rps):,.0f}–{max(rps):,.0f}){extra} | "
            f"{statistics.median(r.p50_ms for r in rounds):.2f} | "
            f"{statistics.median(r.p99_ms for r in rounds):.2f} | "
            f"{statistics.median(r.cpu_us_per_request for r in rounds):.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default="scaling,keepalive,close,big,routes,tls,handshakes,tcp,udp,h2c,h2c-few,h2,h2-few,"
        "grpc,idle",
        help=f"comma-separated, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="twistgw-bench-")
    started: list[Service] = []
    print(f"# twistgw benchmark, {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    print(
        "load: "
        + (
            "wrk (1 thread)"
            if shutil.which("wrk")
            else "benchmarks/loadgen.py (slow: bounds the figures)"
        )
        + f"; {args.rounds} interleaved rounds of {args.duration:.0f}s\n"
    )
    try:
        origin = start_origin(workdir)
        started.append(origin)
        print(f"origin: {origin.name}\n")
        services: dict[str, Service] = {}
        for name in args.scenarios.split(","):
            scenario = SCENARIOS[name]
            if name == "udp":
                print(udp_report(scenario, workdir, started, args.rounds, args.duration))
                print()
                continue
            if scenario.streams and not shutil.which("h2load"):
                print(f"### {name}: skipped (needs h2load: apt-get install nghttp2-client)\n")
                continue
            if name == "grpc":
                try:
                    import grpc  # noqa: F401 (the backend's and the check's)
                except ImportError:
                    print("### grpc: skipped (needs grpcio: ./run-tests installs it)\n")
                    continue
                print(grpc_report(scenario, workdir, started, args.rounds, args.duration))
                print()
                continue
            for target in scenario.targets:
                if target in services:
                    continue
                if target == "direct":
                    services[target] = Service(
                        f"{origin.name}, straight (no proxy)", origin.port, origin.process
                    )
                    continue
                if target == "rpr":
                    services[target] = start_reverse_proxy_resource(workdir, origin)
                elif target.startswith("nginx"):
                    proxy = start_nginx_proxy(
                        workdir,
                        origin,
                        tls=target in ("nginx:tls", "nginx:h2"),
                        http2=target in ("nginx:h2c", "nginx:h2"),
                    )
                    if proxy is None:
                        continue
                    services[target] = proxy
                else:
                    _, workers, *rest = target.split(":")
                    mode = next((m for m in ("tls", "tcp", "udp") if m in rest), "http")
                    services[target] = start_twistgw(
                        workdir,
                        origin,
                        int(workers),
                        int(rest[0]) if rest else 10,
                        mode,
                        access_log="log" in rest,
                        policy=next((p for p in POLICIES if p in rest), ""),
                    )
                started.append(services[target])
            present = [t for t in scenario.targets if t in services]
            if scenario.name == "idle":
                print(f"### idle: {scenario.description}\n")
                print(
                    "| target | RSS MB per process, parent first (idle) | total RSS MB (idle) | "
                    "growth MB with the connections open |"
                )
                print("| --- | --- | --- | --- |")
                for t in present:
                    each, total, growth = idle_memory(services[t], scenario.connections)
                    listed = ", ".join(f"{mb:.1f}" for mb in each)
                    print(f"| {services[t].name} | {listed} | {total:.1f} | {growth:.1f} |")
                print()
                continue
            results: dict[str, list[Round]] = {services[t].name: [] for t in present}

            def load(target: Service, duration: float, scenario: Scenario = scenario) -> Round:
                if scenario.streams:
                    return drive_h2(
                        target, scenario.path, scenario.connections, scenario.streams, duration
                    )
                return drive(target, scenario.path, scenario.connections, duration, scenario.close)

            for t in present:  # warm up: connections, pools, caches
                load(services[t], 1.0)
            for _ in range(args.rounds):
                for t in present:
                    results[services[t].name].append(load(services[t], args.duration))
            nginx = next((t for t in present if t.startswith("nginx") or t == "direct"), None)
            reference = services[nginx or present[0]].name
            print(report(scenario, results, reference))
            print()
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
