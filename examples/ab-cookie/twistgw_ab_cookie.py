"""A twistgw filter plugin for A/B tests: a client without the cookie is put in a group
(by the configured weights), the backend is told the group in a request field, and the
response sets the cookie so the client stays in its group."""

from __future__ import annotations

import random
from http.cookies import CookieError, SimpleCookie
from typing import Any

from zope.interface import implementer

from twistgw.extensions.filters import IFilterPlugin


class ABCookie:
    def __init__(self, cookie: str, header: str, groups: dict[str, int], max_age: int) -> None:
        self.cookie = cookie
        self.header = header
        self.names = list(groups)
        self.weights = list(groups.values())
        self.max_age = max_age

    def _held(self, request) -> str | None:
        """The group the client's cookie names, if it names one of ours."""
        for value in request.headers.get_all("cookie"):
            try:
                found = SimpleCookie(value).get(self.cookie)
            except CookieError:
                continue
            if found is not None and found.value in self.names:
                return found.value
        return None

    def on_request(self, request) -> None:
        group = self._held(request)
        if group is None:
            group = random.choices(self.names, self.weights)[0]
            request.notes["ab-new"] = group  # (for on_response: set the cookie)
        request.headers.set(self.header, group)  # (a client's own copy is replaced)

    def on_response(self, request, response) -> None:
        group = request.notes.get("ab-new")
        if group is not None:
            response.headers.add(
                "Set-Cookie",
                f"{self.cookie}={group}; Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Lax",
            )


@implementer(IFilterPlugin)
class ABCookiePlugin:
    name = "ab-cookie"
    description = "puts clients in A/B groups kept in a cookie; the backend gets the group"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["groups"],
        "properties": {
            "cookie": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "default": "ab"},
            "header": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
            "groups": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 16,
                "propertyNames": {"pattern": "^[A-Za-z0-9_-]{1,32}$"},
                "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000},
            },
            "maxAge": {"type": "integer", "minimum": 1, "default": 2592000},
        },
    }

    def make(self, config: dict[str, Any]) -> ABCookie:
        groups = config["groups"]
        if not any(groups.values()):
            raise ValueError("at least one group needs a weight above 0")
        return ABCookie(
            config.get("cookie", "ab"),
            config.get("header", "X-AB-Group"),
            groups,
            config.get("maxAge", 2592000),
        )


plugin = ABCookiePlugin()
