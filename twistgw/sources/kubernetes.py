"""Cluster mode's config source: every watched kind listed, then watched, each in a
thread of its own, events handed to the reactor with ``callFromThread``.

A watch resumes from the last resourceVersion it saw (bookmarks included); 410 Gone
means that version is too old, so the kind is listed again. Errors and dropped streams
are retried with exponential backoff. A kind the API server does not serve (its CRD
not installed) is skipped with a log line, and looked for again now and then. The
first snapshot waits until every kind has been listed (or skipped), so nothing is
translated from half a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from twisted.application.service import Service
from twisted.logger import Logger

from twistgw.cluster.client import APIError, RawClient
from twistgw.cluster.resources import WATCHED, APIResource
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker

log = Logger()

WATCH_TIMEOUT = 240  # seconds a watch request lasts before it is renewed
MISSING_RETRY = 60.0  # seconds between looks for a kind that is not served
MAX_BACKOFF = 30.0
DEBOUNCE = 0.1  # seconds of quiet gathered into one snapshot


class KubernetesSource(Service):
    def __init__(
        self,
        make_client: Callable[[], RawClient],
        on_snapshot: Callable[[Snapshot], None],
        reactor,
        resources: tuple[APIResource, ...] = WATCHED,
    ) -> None:
        self.make_client = make_client
        self.on_snapshot = on_snapshot
        self.reactor = reactor
        self.resources = resources
        self.objects: dict[str, dict[tuple[str, str], dict]] = {r.kind: {} for r in resources}
        self.listed: set[str] = set()
        self._assembler = ObjectAssembler(GenerationTracker(reactor.seconds))
        self._pending = None
        self._stopping = threading.Event()

    def startService(self) -> None:
        super().startService()
        for resource in self.resources:
            threading.Thread(
                target=self._follow, args=(resource,), name=f"watch-{resource.kind}", daemon=True
            ).start()

    def stopService(self) -> None:
        self._stopping.set()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        return super().stopService()

    def reload(self) -> None:
        """Translate again from what the watches hold (SIGHUP)."""
        self._schedule()

    # -- threads

    def _follow(self, resource: APIResource) -> None:
        api = self.make_client()
        backoff = 0.5
        version = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list(api, resource)
                version = self._watch(api, resource, version)
                backoff = 0.5
            except APIError as exc:
                if exc.status == 410:
                    log.info("{kind}: resourceVersion expired; listing again", kind=resource.kind)
                    version = None
                    continue
                if exc.status == 404:
                    self.reactor.callFromThread(self._missing, resource)
                    self._stopping.wait(MISSING_RETRY)
                    version = None
                    continue
                log.warn("{kind}: {error}; retrying", kind=resource.kind, error=exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception as exc:  # a dropped stream, a refused connection, ...
                log.warn(
                    "{kind}: watch failed ({error}); retrying",
                    kind=resource.kind,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _list(self, api: RawClient, resource: APIResource) -> str:
        body = api.request("GET", resource.collection())
        items = {_key(item): item for item in body.get("items") or []}
        for item in items.values():
            item.setdefault("apiVersion", body.get("apiVersion"))
            item.setdefault("kind", resource.kind)
        self.reactor.callFromThread(self._replace, resource.kind, items)
        return body.get("metadata", {}).get("resourceVersion", "")

    def _watch(self, api: RawClient, resource: APIResource, version: str) -> str:
        """Follow one watch request; the resourceVersion to resume from."""
        for event in api.watch(resource.collection(), version, WATCH_TIMEOUT):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise APIError(int(obj.get("code") or 500), obj.get("message", "watch error"))
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.reactor.callFromThread(self._event, resource.kind, kind, obj)
            if self._stopping.is_set():
                break
        return version

    # -- reactor

    def _missing(self, resource: APIResource) -> None:
        if resource.kind not in self.listed:
            log.warn(
                "{kind} is not served by the API server (is its CRD installed?); skipped",
                kind=resource.kind,
            )
        self.objects[resource.kind] = {}
        self._listed(resource.kind)

    def _replace(self, kind: str, items: dict) -> None:
        self.objects[kind] = items
        self._listed(kind)

    def _event(self, kind: str, event: str, obj: dict) -> None:
        objects = self.objects[kind]
        if event == "DELETED":
            objects.pop(_key(obj), None)
        else:
            obj.setdefault("kind", kind)
            objects[_key(obj)] = obj
        self._schedule()

    def _listed(self, kind: str) -> None:
        self.listed.add(kind)
        self._schedule()

    def _schedule(self) -> None:
        if len(self.listed) < len(self.resources):
            return  # the first snapshot waits for every kind
        if self._pending is None or not self._pending.active():
            self._pending = self.reactor.callLater(DEBOUNCE, self._emit)

    def _emit(self) -> None:
        documents = [obj for objects in self.objects.values() for obj in objects.values()]
        self.on_snapshot(self._assembler.assemble({"kubernetes": documents}))


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
