"""Cluster mode assembled: the API source, the status writer and, optionally, leader
election, started and stopped as one service."""

from __future__ import annotations

import os
import socket

from twisted.application.service import MultiService
from twisted.internet import threads

from twistgw.cluster.client import RawClient, api_client
from twistgw.sources.kubernetes import KubernetesSource
from twistgw.status.kubernetes import StatusWriter
from twistgw.status.leader import LeaderElector
from twistgw.supervisor.controlplane import ControlPlane


class ClusterMode(MultiService):
    def __init__(self, options, control: ControlPlane, reactor) -> None:
        super().__init__()
        kubeconfig = options["kubeconfig"]

        def make_client() -> RawClient:
            return RawClient(api_client(kubeconfig))

        self.reactor = reactor
        self.elector: LeaderElector | None = None
        if options["leader-elect"]:
            identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"
            self.elector = LeaderElector(
                make_client,
                options["leader-election-namespace"],
                options["leader-election-name"],
                identity,
                options["lease-duration"],
                lambda leading: reactor.callFromThread(self.writer.leadership, leading),
            )
        self.writer = StatusWriter(make_client, options["controller-name"], self.may_write)
        control.on_status = self.writer.publish
        self.source = KubernetesSource(make_client, control.on_snapshot, reactor)
        self.source.setServiceParent(self)

    def may_write(self) -> bool:
        """Without leader election every replica writes statuses; with it, the leader."""
        return self.elector is None or self.elector.leading

    def startService(self) -> None:
        self.writer.start()
        if self.elector is not None:
            self.elector.start()
        super().startService()

    def stopService(self):
        self.writer.stop()
        stopped = super().stopService()
        if self.elector is not None:
            return threads.deferToThread(self.elector.stop)
        return stopped

    def reload(self) -> None:
        self.source.reload()
