"""The control plane: source -> translate -> status and data plane."""

from __future__ import annotations

import attrs
from twisted.application.service import Service
from twisted.logger import Logger

from twistgw.dataplane.plane import DataPlane
from twistgw.metrics import Metrics
from twistgw.routing.ir import RoutingTable
from twistgw.snapshot import Snapshot
from twistgw.status.store import StatusStore
from twistgw.translate import TranslateOptions, translate

log = Logger()


class ControlPlane(Service):
    """Translates each snapshot, publishes statuses and hands the table to the data
    plane. A translation that raises is logged and the last good table keeps serving."""

    def __init__(
        self, options: TranslateOptions, dataplane: DataPlane, metrics: Metrics, clock
    ) -> None:
        self.options = options
        self.dataplane = dataplane
        self.metrics = metrics
        self.store = StatusStore(clock.seconds)
        self.table = RoutingTable()
        self.translated = False
        self.applied = False
        self._generation = 0
        self._snapshot: Snapshot | None = None

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self.metrics.reloads.inc()
        if snapshot.errors:
            self.metrics.reload_errors.inc(len(snapshot.errors))
        self._translate()

    def _translate(self) -> None:
        snapshot = self._snapshot
        try:
            translation = translate(snapshot, self.options)
        except Exception:
            log.failure("translation failed; the previous configuration stays in force")
            self.metrics.reload_errors.inc()
            return
        self.options = attrs.evolve(self.options, assigned_addresses=translation.assigned_addresses)
        self.store.update(translation.statuses, snapshot.errors)
        self.table = translation.table
        self.translated = True
        self._generation += 1
        generation = self._generation
        d = self.dataplane.apply(translation.table)
        d.addCallback(lambda _: self._applied(generation))

    def _applied(self, generation: int) -> None:
        if generation != self._generation:
            return
        self.applied = True
        failures, unusable = self.dataplane.feedback()
        if failures != self.options.bind_failures or unusable != self.options.unusable_addresses:
            # what could not be bound shows in status: translate again knowing it
            self.options = attrs.evolve(
                self.options, bind_failures=failures, unusable_addresses=unusable
            )
            self._translate()

    def ready(self) -> tuple[bool, str]:
        if not self.translated:
            return False, "waiting for the first configuration"
        if not self.applied:
            return False, "binding listeners"
        return True, "ready"

    def config_dump(self) -> dict:
        return {
            "routingTable": self.table.as_dict(),
            "bindFailures": {f"{a}:{p}": why for (a, p), why in self.dataplane.failed.items()},
        }
