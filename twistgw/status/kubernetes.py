"""Cluster mode's status writer: each object's status through its status subresource,
only when it changed, from one thread, the latest status per object.

A write reads the object first and sends its resourceVersion; a 409 Conflict means
someone wrote in between, so it reads again and retries. Route ``parents`` and policy
``ancestors`` entries of other controllers are kept as they are: only the entries with
this controller's name are replaced. A condition whose status did not change keeps the
``lastTransitionTime`` the API already holds (another replica may have written it).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable

from twisted.logger import Logger

from twistgw.cluster.client import APIError, RawClient
from twistgw.cluster.resources import BY_KIND
from twistgw.status.store import condition_lists

log = Logger()

#: Status lists shared with other controllers, keyed by controllerName.
SHARED_LISTS = ("parents", "ancestors")
ATTEMPTS = 5
RETRY_DELAY = 1.0  # seconds before a failed write is tried again

Key = tuple[str, str, str]  # kind, namespace, name


def _key(item: dict) -> Key:
    meta = item["metadata"]
    return item["kind"], meta.get("namespace", ""), meta["name"]


def merged_status(current: dict, ours: dict, controller: str) -> dict:
    """``ours`` laid over ``current``: other controllers' shared entries kept, times of
    unchanged conditions kept."""
    status = copy.deepcopy(ours)
    for field in SHARED_LISTS:
        if field in ours or field in current:
            theirs = [
                entry
                for entry in current.get(field) or []
                if entry.get("controllerName") != controller
            ]
            status[field] = theirs + list(ours.get(field) or [])
    before = {
        where: {c["type"]: c for c in conditions}
        for where, _, conditions in condition_lists(current)
    }
    for where, _, conditions in condition_lists(status):
        for condition in conditions:
            old = before.get(where, {}).get(condition["type"])
            if old is not None and old.get("status") == condition.get("status"):
                condition["lastTransitionTime"] = old.get("lastTransitionTime")
    return status


class StatusWriter:
    def __init__(
        self,
        make_client: Callable[[], RawClient],
        controller_name: str,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.make_client = make_client
        self.controller = controller_name
        self.may_write = may_write
        self._lock = threading.Condition()
        self._queue: dict[Key, dict] = {}
        self._written: dict[Key, str] = {}  # what was last written, as JSON
        self._latest: dict[Key, dict] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()

    def publish(self, items: list[dict]) -> None:
        """The statuses of one translation (reactor thread). Objects no longer in it
        get this controller's shared entries removed."""
        latest = {_key(item): item for item in items}
        for key, item in self._latest.items():
            if key not in latest and any(field in item["status"] for field in SHARED_LISTS):
                latest[key] = {
                    **item,
                    "status": {field: [] for field in SHARED_LISTS if field in item["status"]},
                }
        self._latest = {
            key: item for key, item in latest.items() if key in {_key(i) for i in items}
        }
        if self.may_write():
            self._enqueue(latest)

    def leadership(self, leading: bool) -> None:
        """Taking over: check every object again, whatever this replica wrote before."""
        if leading:
            with self._lock:
                self._written.clear()
            self._enqueue(dict(self._latest))

    def _enqueue(self, items: dict[Key, dict]) -> None:
        with self._lock:
            for key, item in items.items():
                if self._written.get(key) != json.dumps(item["status"], sort_keys=True):
                    self._queue[key] = item
            self._lock.notify_all()

    def _run(self) -> None:
        api = self.make_client()
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                key, item = next(iter(self._queue.items()))
                del self._queue[key]
            if not self.may_write():
                continue
            if self._write(api, item):
                with self._lock:
                    self._written[key] = json.dumps(item["status"], sort_keys=True)
            else:  # the API failed us: try again shortly, unless newer news came
                time.sleep(RETRY_DELAY)
                with self._lock:
                    self._queue.setdefault(key, item)

    def _write(self, api: RawClient, item: dict) -> bool:
        kind, namespace, name = _key(item)
        resource = BY_KIND.get(kind)
        if resource is None:
            return True  # not a kind this writer knows: nothing to do
        path = resource.path(name, namespace)
        for _ in range(ATTEMPTS):
            try:
                current = api.request("GET", path)
                status = merged_status(current.get("status") or {}, item["status"], self.controller)
                if status == (current.get("status") or {}):
                    return True
                body = {
                    "apiVersion": current.get("apiVersion"),
                    "kind": kind,
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                    "status": status,
                }
                if not namespace:
                    del body["metadata"]["namespace"]
                api.request("PUT", path + "/status", body)
                return True
            except Exception as exc:  # the API's answers, or a failed connection
                status = exc.status if isinstance(exc, APIError) else None
                if status == 404:
                    return True  # gone: nothing to write
                if status != 409:
                    log.warn(
                        "writing the status of {kind} {ns}/{name} failed: {error}",
                        kind=kind,
                        ns=namespace,
                        name=name,
                        error=exc,
                    )
                    return False
        log.warn(
            "status of {kind} {ns}/{name}: still conflicting after {n} attempts",
            kind=kind,
            ns=namespace,
            name=name,
            n=ATTEMPTS,
        )
        return False
