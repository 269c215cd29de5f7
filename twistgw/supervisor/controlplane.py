"""The control plane: source -> translate -> status and workers."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.application.service import Service
from twisted.logger import Logger

from twistgw.metrics import Metrics
from twistgw.routing.ir import RoutingTable
from twistgw.snapshot import Snapshot
from twistgw.status.store import StatusStore
from twistgw.supervisor.sockets import where
from twistgw.supervisor.workers import TableTooLarge, WorkerPool
from twistgw.translate import TranslateOptions, translate

log = Logger()


class ControlPlane(Service):
    """Translates each snapshot, publishes statuses and hands the table to the workers.
    A translation that raises is logged and the last good table keeps serving. What the
    table's sockets could not bind goes back into translation, so statuses say so."""

    def __init__(
        self, options: TranslateOptions, workers: WorkerPool, metrics: Metrics, clock
    ) -> None:
        self.options = options
        self.workers = workers
        self.metrics = metrics
        self.store = StatusStore(clock.seconds)
        self.table = RoutingTable()
        self.translated = False
        self._snapshot: Snapshot | None = None
        #: why the newest translation's table was not applied, for /status
        self.table_error: dict[str, str] | None = None
        #: called with every object's status after each translation (cluster mode)
        self.on_status: Callable[[list[dict]], None] | None = None

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self.metrics.reloads.inc()
        if snapshot.errors:
            self.metrics.reload_errors.inc(len(snapshot.errors))
        self._translate()

    def _translate(self, rounds: int = 2) -> None:
        snapshot = self._snapshot
        try:
            translation = translate(snapshot, self.options)
        except Exception:
            log.failure("translation failed; the previous configuration stays in force")
            self.metrics.reload_errors.inc()
            return
        try:
            self.workers.apply(translation.table)
        except TableTooLarge as error:
            # the statuses stay those of the table in force, which says so in errors
            log.error("{error}", error=str(error))
            self.metrics.config_refused.labels("table_bytes").inc()
            self.table_error = {"source": "routing table", "message": str(error)}
            return
        self.table_error = None
        self.options = attrs.evolve(self.options, assigned_addresses=translation.assigned_addresses)
        self.store.update(translation.statuses, snapshot.errors)
        if self.on_status is not None:
            self.on_status(self.store.document()["items"])
        self.table = translation.table
        self.translated = True
        failures, unusable = self.workers.feedback()
        if (failures, unusable) != (
            self.options.bind_failures,
            self.options.unusable_addresses,
        ) and rounds:
            self.options = attrs.evolve(
                self.options, bind_failures=failures, unusable_addresses=unusable
            )
            self._translate(rounds - 1)

    def status_document(self) -> dict:
        """The admin endpoint's ``/status``: every object's status, and the errors of
        the configuration input and of the workers (routing tables they rejected)."""
        document = self.store.document()
        table = [self.table_error] if self.table_error is not None else []
        return {**document, "errors": [*document["errors"], *table, *self.workers.errors()]}

    def ready(self) -> tuple[bool, str]:
        if not self.translated:
            return False, "waiting for the first configuration"
        return self.workers.ready()

    def config_dump(self) -> dict:
        failures, unusable = self.workers.feedback()
        return {
            "routingTable": self.table.as_dict(),
            "bindFailures": {where(key): why for key, why in failures.items()},
            "workers": self.workers.describe(),
        }
