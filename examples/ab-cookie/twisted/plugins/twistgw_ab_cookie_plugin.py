"""Makes the ab-cookie filter plugin known to twistgw (Twisted's plugin system finds the
objects providing IFilterPlugin in modules of twisted/plugins)."""

from twistgw_ab_cookie import plugin

__all__ = ["plugin"]
