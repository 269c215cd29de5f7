"""The service tree ``twistd gateway`` runs: the supervisor process."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from twisted.application.service import MultiService
from twisted.application.strports import service as endpoint_service
from twisted.logger import Logger

from twistgw.admin.dashboard import summary
from twistgw.admin.server import admin_site
from twistgw.cluster.mode import ClusterMode
from twistgw.metrics import Metrics
from twistgw.options import config_limits, data_plane_settings, translate_options
from twistgw.sources.directory import DirectorySource
from twistgw.sources.limits import ACROSS_FILES, PER_FILE
from twistgw.supervisor.controlplane import ControlPlane
from twistgw.supervisor.workers import WorkerPool

log = Logger()


class GatewayService(MultiService):
    """Worker pool, control plane, admin server and config source, started in that order
    (and stopped in reverse: the source first, the workers drained last)."""

    def __init__(self, options, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.metrics = Metrics()
        self.workers = WorkerPool(
            reactor,
            options["workers"],
            options["drain-timeout"],
            self.metrics,
            data_plane_settings(options),
            options["worker-watchdog-timeout"],
        )
        self.workers.setServiceParent(self)
        self.control = ControlPlane(
            translate_options(options),
            self.workers,
            self.metrics,
            reactor,
        )
        self.control.setServiceParent(self)
        registry = self.metrics.exposition_registry()
        from prometheus_client import generate_latest

        def dashboard() -> Callable[[], dict]:
            status, table = self.control.status_document(), self.control.table
            return lambda: summary(status, table, registry)

        site = admin_site(
            self.control.status_document,
            self.control.ready,
            lambda: lambda: generate_latest(registry),
            self.control.config_dump,
            dashboard,
            reactor,
            token=options["admin-token"],
        )
        endpoint_service(options["admin-endpoint"], site, reactor=reactor).setServiceParent(self)
        if options["kubernetes"]:
            self.source = ClusterMode(options, self.control, reactor)
        else:
            refused = self.metrics.config_refused
            for limit in (*PER_FILE, *ACROSS_FILES):
                refused.labels(limit)  # shown at 0 from the start
            self.source = DirectorySource(
                options["config-dir"],
                self.control.on_snapshot,
                reactor,
                use_inotify=options["watch"] == "auto",
                limits=config_limits(options),
                on_refused=lambda limit: refused.labels(limit).inc(),
            )
        self.source.setServiceParent(self)
        self._terms = 0

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._install_signals)

    def _install_signals(self) -> None:
        """SIGHUP re-reads the config now; a second SIGTERM (or SIGINT) ends it hard."""
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self._reload))
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGINT, self._terminate)

    def _reload(self) -> None:
        log.info("SIGHUP: reading the configuration again")
        self.source.reload()

    def _terminate(self, signum, frame) -> None:
        self._terms += 1
        if self._terms == 1:
            self.reactor.callFromThread(self._stop)
            return
        self.workers.kill_all()
        os._exit(1)

    def _stop(self) -> None:
        log.info(
            "stopping: draining workers (up to {timeout}s)", timeout=self.workers.drain_timeout
        )
        if self.reactor.running:
            self.reactor.stop()
