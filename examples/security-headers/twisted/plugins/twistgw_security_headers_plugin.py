"""Makes the security-headers filter plugin known to twistgw (Twisted's plugin system
finds the objects providing IFilterPlugin in modules of twisted/plugins)."""

from twistgw_security_headers import plugin

__all__ = ["plugin"]
