"""The ``gateway`` twistd plugin."""

from __future__ import annotations

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
        from twistgw.service import GatewayService

        return GatewayService(options)


service_maker = GatewayServiceMaker()
