"""A twistgw filter plugin that adds security headers to every response of the rules
that reference it (and leaves a backend's own alone unless told to replace them)."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twistgw.extensions.filters import IFilterPlugin

#: What each config switch sets.
HEADERS = {
    "hsts": ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    "noSniff": ("X-Content-Type-Options", "nosniff"),
    "referrerPolicy": ("Referrer-Policy", "strict-origin-when-cross-origin"),
}


class SecurityHeaders:
    def __init__(self, fields: list[tuple[str, str]], replace: bool) -> None:
        self.fields = fields
        self.replace = replace

    def on_request(self, request) -> None:
        return None  # (nothing to do on the way in)

    def on_response(self, request, response) -> None:
        for name, value in self.fields:
            if self.replace or name not in response.headers:
                response.headers.set(name, value)


@implementer(IFilterPlugin)
class SecurityHeadersPlugin:
    name = "security-headers"
    description = "adds HSTS, nosniff, a referrer policy and frame options to responses"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "hsts": {"type": "boolean", "default": True},
            "noSniff": {"type": "boolean", "default": True},
            "referrerPolicy": {"type": "boolean", "default": True},
            "frameOptions": {"enum": ["DENY", "SAMEORIGIN", None], "default": "DENY"},
            "replace": {"type": "boolean", "default": False},
        },
    }

    def make(self, config: dict[str, Any]) -> SecurityHeaders:
        fields = [HEADERS[key] for key in HEADERS if config.get(key, True)]
        frame = config.get("frameOptions", "DENY")
        if frame is not None:
            fields.append(("X-Frame-Options", frame))
        return SecurityHeaders(fields, bool(config.get("replace", False)))


plugin = SecurityHeadersPlugin()
