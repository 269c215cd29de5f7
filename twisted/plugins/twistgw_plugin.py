"""Exposes ``twistd gateway``."""

from twistgw.plugin import service_maker

__all__ = ["service_maker"]
