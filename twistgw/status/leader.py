"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go does it.

Every replica serves traffic; only the leader writes status. A replica takes the Lease
when it is free, expired (``renewTime`` + ``leaseDurationSeconds`` passed) or already
its own, writing with the Lease's resourceVersion so that two replicas cannot both
win (the loser gets 409 Conflict). The leader renews every third of the duration and
gives up leading once it has failed to renew for a whole duration. On a clean stop it
releases the Lease, so another replica takes over at once.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable

from twisted.logger import Logger

from twistgw.cluster.client import APIError, RawClient
from twistgw.cluster.resources import LEASE

log = Logger()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(
        self,
        make_client: Callable[[], RawClient],
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        on_change: Callable[[bool], None],
    ) -> None:
        self.make_client = make_client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.on_change = on_change
        self.leading = False
        self._renewed: datetime.datetime | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()

    def stop(self) -> None:
        """Stop campaigning; release the Lease if this replica holds it (blocking)."""
        self._stop.set()
        if self.leading:
            try:
                self._release(self.make_client())
            except Exception as exc:
                log.warn("releasing the leader Lease failed: {error}", error=exc)
            self._set(False)

    def _run(self) -> None:
        api = self.make_client()
        while not self._stop.is_set():
            try:
                won = self._try(api)
            except Exception as exc:
                log.warn("leader election: {error}", error=exc)
                won = None
            if won:
                self._renewed = _now()
            lapsed = self._renewed is None or (
                (_now() - self._renewed).total_seconds() > self.duration
            )
            if self._stop.is_set():
                return
            self._set(bool(won) or (won is None and self.leading and not lapsed))
            self._stop.wait(self.duration / 3)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info(
                "{identity} {what} leader (Lease {ns}/{name})",
                identity=self.identity,
                what="is now" if leading else "is no longer",
                ns=self.namespace,
                name=self.name,
            )
            self.on_change(leading)

    def _spec(self, previous: dict | None) -> dict:
        now = _micro_time(_now())
        taking_over = previous is None or previous.get("holderIdentity") != self.identity
        transitions = (previous or {}).get("leaseTransitions", 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": now if taking_over else previous.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": transitions + 1 if taking_over and previous else transitions,
        }

    def _try(self, api: RawClient) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        path = LEASE.path(self.name, self.namespace)
        try:
            lease = api.request("GET", path)
        except APIError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                api.request("POST", path.rsplit("/", 1)[0], body)
            except APIError as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        expired = renewed is None or (_now() - renewed).total_seconds() > spec.get(
            "leaseDurationSeconds", self.duration
        )
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(spec)
        try:
            api.request("PUT", path, lease)
        except APIError as exc:
            if exc.status == 409:
                return False  # another replica wrote first
            raise
        return True

    def _release(self, api: RawClient) -> None:
        path = LEASE.path(self.name, self.namespace)
        lease = api.request("GET", path)
        if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["renewTime"] = None
            api.request("PUT", path, lease)
