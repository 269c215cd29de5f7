"""Makes the body-guard filter plugin known to twistgw (Twisted's plugin system finds
the objects providing IFilterPlugin in modules of twisted/plugins)."""

from twistgw_body_guard import plugin

__all__ = ["plugin"]
