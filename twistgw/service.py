"""The service tree ``twistd gateway`` runs."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.application.strports import service as endpoint_service

from twistgw.admin.server import admin_site, prometheus_text
from twistgw.dataplane.plane import DataPlane
from twistgw.metrics import Metrics
from twistgw.sources.directory import DirectorySource
from twistgw.supervisor.controlplane import ControlPlane
from twistgw.translate import TranslateOptions


class GatewayService(MultiService):
    """Config source, control plane, data plane and admin server, started together."""

    def __init__(self, options, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.metrics = Metrics()
        self.dataplane = DataPlane(reactor, self.metrics)
        self.control = ControlPlane(
            TranslateOptions(
                controller_name=options["controller-name"],
                address_pool=tuple(options["address-pool"]),
            ),
            self.dataplane,
            self.metrics,
            reactor,
        )
        self.control.setServiceParent(self)
        site = admin_site(
            self.control.store.document,
            self.control.ready,
            prometheus_text(self.metrics.registry),
            self.control.config_dump,
        )
        endpoint_service(options["admin-endpoint"], site, reactor=reactor).setServiceParent(self)
        self.source = DirectorySource(
            options["config-dir"],
            self.control.on_snapshot,
            reactor,
            use_inotify=options["watch"] == "auto",
        )
        self.source.setServiceParent(self)

    def stopService(self):
        d = super().stopService()
        d.addCallback(lambda _: self.dataplane.stop())
        return d
