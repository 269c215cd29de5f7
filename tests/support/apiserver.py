"""A Kubernetes API server for tests, faithful to the protocol the kubernetes client
speaks: list with resourceVersion, chunked watch streams (with bookmarks, timeouts and
410 Gone once history is compacted), get/create/replace/patch/delete, the status
subresource with resourceVersion conflicts (409), merge and JSON patches, Leases
(any namespaced kind), and faults on demand: dropped streams, a restart, injected
errors, kinds whose CRD is not installed.

Objects live in memory; ``state`` survives ``stop()`` and ``start()`` (a restart).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GATEWAY = "gateway.networking.k8s.io"
#: (group, version, plural) -> (kind, namespaced, has a status subresource)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False, True),
    ("", "v1", "services"): ("Service", True, True),
    ("", "v1", "secrets"): ("Secret", True, False),
    ("", "v1", "configmaps"): ("ConfigMap", True, False),
    ("discovery.k8s.io", "v1", "endpointslices"): ("EndpointSlice", True, False),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True, False),
    (GATEWAY, "v1", "gatewayclasses"): ("GatewayClass", False, True),
    (GATEWAY, "v1", "gateways"): ("Gateway", True, True),
    (GATEWAY, "v1", "listenersets"): ("ListenerSet", True, True),
    (GATEWAY, "v1", "httproutes"): ("HTTPRoute", True, True),
    (GATEWAY, "v1", "grpcroutes"): ("GRPCRoute", True, True),
    (GATEWAY, "v1", "tlsroutes"): ("TLSRoute", True, True),
    (GATEWAY, "v1alpha2", "tcproutes"): ("TCPRoute", True, True),
    (GATEWAY, "v1alpha2", "udproutes"): ("UDPRoute", True, True),
    (GATEWAY, "v1beta1", "referencegrants"): ("ReferenceGrant", True, False),
    (GATEWAY, "v1", "backendtlspolicies"): ("BackendTLSPolicy", True, True),
    ("gateway.twistgw.dev", "v1alpha1", "trafficpolicies"): ("TrafficPolicy", True, True),
    ("gateway.twistgw.dev", "v1alpha1", "securitypolicies"): ("SecurityPolicy", True, True),
    ("gateway.twistgw.dev", "v1alpha1", "pythonfilters"): ("PythonFilter", True, False),
}
PLURALS = {kind: key for key, (kind, _, _) in RESOURCES.items()}


class Store:
    """Objects, the event history watches replay, and the resourceVersion counter."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.objects: dict[tuple, dict] = {}  # (resource, namespace, name) -> object
        self.history: list[tuple[int, str, tuple, dict]] = []  # (rv, type, resource, obj)
        self.version = 1
        self.compacted = 0  # watches from before this resourceVersion get 410
        self.installed = set(RESOURCES)
        self.faults: list[tuple[str, str, int]] = []  # (method, path suffix, status)
        self.requests: list[tuple[str, str, str]] = []  # method, path, bearer token

    def record(self, kind: str, resource: tuple, obj: dict) -> None:
        """Bump the resourceVersion, store the event, wake the watches (lock held)."""
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, kind, resource, copy.deepcopy(obj)))
        self.lock.notify_all()

    def compact(self) -> None:
        """Forget the history: watches resuming from before now get 410 Gone."""
        with self.lock:
            self.history.clear()
            self.compacted = self.version


class APIServer:
    def __init__(self, port: int = 0) -> None:
        self.state = Store()
        self.port = port
        self.httpd: ThreadingHTTPServer | None = None
        self.streams: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> APIServer:
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self.drop_watches()

    def drop_watches(self) -> None:
        """End every open watch stream abruptly (the connection closes mid-stream)."""
        with self.state.lock:
            for stream in list(self.streams):
                stream.dropped = True
            self.state.lock.notify_all()

    def kubeconfig(self, path: str, token: str = "test") -> str:
        """A kubeconfig for this server; ``token`` tells its client's requests apart."""
        with open(path, "w") as handle:
            json.dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                    "current-context": "test",
                },
                handle,
            )
        return path

    # -- direct access for tests (as another client of the API would act)

    def apply(self, obj: dict) -> dict:
        """Create or replace (spec and metadata; status kept) an object."""
        resource = PLURALS[obj["kind"]]
        meta = obj["metadata"]
        with self.state.lock:
            key = (resource, meta.get("namespace", ""), meta["name"])
            current = self.state.objects.get(key)
            if current is None:
                return self._create(resource, meta.get("namespace", ""), copy.deepcopy(obj))
            updated = copy.deepcopy(obj)
            updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._replace(key, updated, status=False)

    def write_status(self, obj: dict) -> dict:
        """Replace an object's status, as another controller would."""
        meta = obj["metadata"]
        with self.state.lock:
            key = (PLURALS[obj["kind"]], meta.get("namespace", ""), meta["name"])
            return self._replace(key, copy.deepcopy(obj), status=True)

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        resource = PLURALS[kind]
        with self.state.lock:
            obj = self.state.objects.pop((resource, namespace, name), None)
            if obj is not None:
                self.state.record("DELETED", resource, obj)

    def get(self, kind: str, name: str, namespace: str = "") -> dict | None:
        with self.state.lock:
            obj = self.state.objects.get((PLURALS[kind], namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def fail_next(self, method: str, suffix: str, status: int) -> None:
        """Answer the next ``method`` request whose path ends with ``suffix`` with
        ``status`` (a 409 Conflict, a 500, ...)."""
        with self.state.lock:
            self.state.faults.append((method, suffix, status))

    def uninstall(self, kind: str) -> None:
        """As if the kind's CRD were not installed: its paths answer 404."""
        self.state.installed.discard(PLURALS[kind])

    def count(self, method: str, suffix: str, token: str | None = None) -> int:
        """Requests so far of ``method`` on paths ending with ``suffix`` (by one client)."""
        return sum(
            1
            for m, p, t in list(self.state.requests)
            if m == method and p.endswith(suffix) and token in (None, t)
        )

    # -- the semantics (lock held)

    def _create(self, resource: tuple, namespace: str, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if RESOURCES[resource][1]:
            meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        group, version, _ = resource
        obj["apiVersion"] = f"{group}/{version}" if group else version
        obj["kind"] = RESOURCES[resource][0]
        self.state.objects[(resource, namespace, meta["name"])] = obj
        self.state.record("ADDED", resource, obj)
        return obj

    def _replace(self, key: tuple, body: dict, status: bool) -> dict:
        """PUT semantics: a stale resourceVersion is a conflict; the main resource
        keeps the status, the status subresource keeps everything else."""
        current = self.state.objects[key]
        wanted = body.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise _Error(
                409,
                "Conflict",
                "the object has been modified; please apply "
                "your changes to the latest version and try again",
            )
        updated = copy.deepcopy(current)
        if status:
            updated["status"] = copy.deepcopy(body.get("status", {}))
        else:
            for field, value in body.items():
                if field not in ("metadata", "status", "apiVersion", "kind"):
                    updated[field] = copy.deepcopy(value)
            for field in ("labels", "annotations"):
                if field in body.get("metadata", {}):
                    updated["metadata"][field] = copy.deepcopy(body["metadata"][field])
            if not RESOURCES[key[0]][2] and "status" in body:
                updated["status"] = copy.deepcopy(body["status"])
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if updated == current:
            return current  # a no-op write does not bump the resourceVersion
        self.state.objects[key] = updated
        self.state.record("MODIFIED", key[0], updated)
        return updated


class _Error(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(target: dict, operations: list) -> dict:
    result = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op["value"]:
                raise _Error(422, "Invalid", f"test failed at {op['path']}")
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise _Error(422, "Invalid", f"unsupported JSON patch op {op['op']}")
    return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: APIServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, path: str) -> tuple[tuple, str, str | None, bool]:
        """(resource, namespace, name, status subresource) of a path; raises 404."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _Error(404, "NotFound", f"no route for {path}")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = (group, version, rest[0]) if rest else None
        if resource not in RESOURCES or resource not in self.api.state.installed:
            raise _Error(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        status = len(rest) > 2 and rest[2] == "status"
        return resource, namespace, name, status

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state = self.api.state
        try:
            with state.lock:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                state.requests.append((method, url.path, token))
                for fault in state.faults:
                    if fault[0] == method and url.path.endswith(fault[1]):
                        state.faults.remove(fault)
                        raise _Error(fault[2], "Injected", f"injected {fault[2]}")
            resource, namespace, name, status = self._route(url.path)
            if method == "GET" and name is None:
                if query.get("watch") in ("true", "1"):
                    self._watch(resource, namespace, query)
                    return
                self._send(200, self._list(resource, namespace))
                return
            body = json.loads(raw) if raw else None
            with state.lock:
                self._send(*self._write(method, resource, namespace, name, status, body))
        except _Error as exc:
            self._send(exc.code, exc.status())

    def _list(self, resource: tuple, namespace: str) -> dict:
        state = self.api.state
        with state.lock:
            items = [
                copy.deepcopy(obj)
                for (res, ns, _), obj in sorted(state.objects.items())
                if res == resource and (not namespace or ns == namespace)
            ]
            version = str(state.version)
        kind = RESOURCES[resource][0]
        return {
            "kind": f"{kind}List",
            "apiVersion": f"{resource[0]}/{resource[1]}" if resource[0] else "v1",
            "metadata": {"resourceVersion": version},
            "items": items,
        }

    def _write(self, method, resource, namespace, name, status, body) -> tuple[int, dict]:
        api, state = self.api, self.api.state
        key = (resource, namespace, name)
        if method == "POST":
            if name is not None or body is None:
                raise _Error(405, "MethodNotAllowed", "POST to a collection only")
            name = body["metadata"]["name"]
            if (resource, namespace, name) in state.objects:
                raise _Error(409, "AlreadyExists", f"{name} already exists")
            return 201, api._create(resource, namespace, body)
        current = state.objects.get(key)
        if current is None:
            raise _Error(404, "NotFound", f"{RESOURCES[resource][0]} {name} not found")
        if method == "GET":
            return 200, current
        if method == "DELETE":
            del state.objects[key]
            state.record("DELETED", resource, current)
            return 200, current
        if method == "PUT":
            return 200, api._replace(key, body, status)
        content = self.headers.get("Content-Type", "")
        if "json-patch" in content:
            patched = _json_patch(current, body)
        elif isinstance(body, dict):  # merge patch (and strategic merge, alike here)
            patched = _merge_patch(current, body)
        else:
            raise _Error(400, "BadRequest", f"a {content} body must be a JSON object")
        patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return 200, api._replace(key, patched, status)

    def _watch(self, resource: tuple, namespace: str, query: dict) -> None:
        state = self.api.state
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 300)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.dropped = False
        with state.lock:
            self.api.streams.add(self)
        try:
            with state.lock:
                if since and since < state.compacted:
                    gone = _Error(410, "Expired", f"too old resource version: {since}")
                    self._chunk({"type": "ERROR", "object": gone.status()})
                    self._end()
                    return
                if not since:  # from now, with the current objects as ADDED
                    for (res, ns, _), obj in sorted(state.objects.items()):
                        if res == resource and (not namespace or ns == namespace):
                            self._chunk({"type": "ADDED", "object": obj})
                    since = state.version
            last_bookmark = time.monotonic()
            while True:
                with state.lock:
                    events = [
                        (rv, kind, obj)
                        for rv, kind, res, obj in state.history
                        if rv > since
                        and res == resource
                        and (not namespace or obj["metadata"].get("namespace") == namespace)
                    ]
                    version = state.version  # what the events above cover
                    if not events and not self.dropped:
                        state.lock.wait(0.2)
                if self.dropped:
                    self.connection.shutdown(2)  # abrupt: no terminating chunk
                    return
                for rv, kind, obj in events:
                    self._chunk({"type": kind, "object": obj})
                    since = max(since, rv)
                if bookmarks and time.monotonic() - last_bookmark > 1.0:
                    kind = RESOURCES[resource][0]
                    marker = {"kind": kind, "metadata": {"resourceVersion": str(version)}}
                    self._chunk({"type": "BOOKMARK", "object": marker})
                    since, last_bookmark = max(since, version), time.monotonic()
                if time.monotonic() >= deadline:
                    self._end()
                    return
        except OSError:
            return
        finally:
            with state.lock:
                self.api.streams.discard(self)
            self.close_connection = True

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
