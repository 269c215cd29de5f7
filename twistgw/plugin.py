"""The ``gateway`` twistd plugin."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer

from twistgw.options import GatewayOptions


@implementer(IServiceMaker, IPlugin)
class GatewayServiceMaker:
    tapname = "gateway"
    description = "twistgw: a Kubernetes Gateway API gateway"
    options = GatewayOptions

    def makeService(self, options):
        shared_metrics_directory()  # before anything imports prometheus-client
        from twistgw.service import GatewayService

        return GatewayService(options)


def shared_metrics_directory() -> str:
    """A fresh directory where the supervisor and workers keep their metric values
    (prometheus-client's multiprocess mode), removed when the process exits."""
    directory = tempfile.mkdtemp(prefix="twistgw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, True)
    return directory


service_maker = GatewayServiceMaker()
