"""Filter plugins: request and response logic in Python that an operator installs on
the gateway's hosts and routes reference with an ``ExtensionRef`` filter naming a
``PythonFilter`` object (``docs/filters.md``).

A plugin is an object providing ``IFilterPlugin``, found through Twisted's plugin
system: a module in a ``twisted/plugins/`` directory of an installed package (as the
``gateway`` twistd plugin itself is). ``make`` turns a PythonFilter's ``spec.config``
(checked against the plugin's ``config_schema`` first) into an ``IFilter``, once per
routing table; the filter then sees each request on the rules that reference it.

A filter runs in a worker, on its reactor: it must not block (no synchronous network
or disk I/O, nothing slow); work that waits returns a Deferred. What it raises (or a
Deferred that fails) answers that request 500, is logged with the plugin's name and
counted; it never ends the worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from jsonschema import Draft202012Validator
from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from zope.interface import Attribute, Interface

from twistgw.api.fields import HEADER_NAME_RE
from twistgw.api.validation import field_value_problem
from twistgw.httpfields import CONNECTION_FIELDS

log = Logger()
#: The longest value a filter may give a field.
MAX_FIELD_VALUE = 8192
#: The longest request body a filter may ask for (``request_body_limit``).
MAX_REQUEST_BODY = 1024 * 1024


class IFilterPlugin(IPlugin):
    """An installed filter plugin (an IPlugin: Twisted's plugin system lists only
    those)."""

    name = Attribute("str: what a PythonFilter's spec.plugin names (a DNS label)")
    description = Attribute("str: one line for `twistgw plugins`")
    config_schema = Attribute("dict: a JSON Schema that spec.config must satisfy")

    def make(config: dict[str, Any]) -> IFilter:  # noqa: N805 (an interface method)
        """A filter for one PythonFilter's ``config`` (already checked against
        ``config_schema``); raise ValueError to refuse it (the message is reported)."""


class IFilter(Interface):
    """One configured filter. ``on_response`` is optional."""

    def on_request(request: FilterRequest) -> Answer | None:  # noqa: N805
        """See (and change) the request head; return None to let it go on, an Answer
        to answer it here, or a Deferred firing with either."""


@attrs.define
class Answer:
    """A response a filter gives instead of the backend's."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = attrs.field(factory=list)


class Fields:
    """Header fields as a filter sees them: names case-insensitive, text values (the
    wire's bytes as Latin-1). Fields a filter sets are checked: names tokens and not
    the fields that frame the message (Content-Length, Transfer-Encoding, Host, ...),
    values of visible Latin-1 text (no control characters, no whitespace at either
    end), at most ``MAX_FIELD_VALUE`` characters (a ValueError otherwise)."""

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``."""
        key = name.lower().encode("latin-1")
        for found, value in self._fields:
            if found == key:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for found, value in self._fields if found == key]

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one of ``value``."""
        self.remove(name)
        self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._fields.append((_name(name), _value(value)))

    def remove(self, name: str) -> None:
        key = name.lower().encode("latin-1")
        self._fields[:] = [field for field in self._fields if field[0] != key]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value in self._fields:
            yield name.decode("latin-1"), value.decode("latin-1")

    def as_list(self) -> list[tuple[bytes, bytes]]:
        """The fields as the exchange carries them."""
        return self._fields


def _name(name: str) -> bytes:
    if not HEADER_NAME_RE.fullmatch(name) or len(name) > 256:
        raise ValueError(f"{name[:64]!r} is not a header field name")
    data = name.lower().encode("ascii")
    if name.lower() in CONNECTION_FIELDS:
        raise ValueError(f"{name!r} frames the message: only the gateway sets it")
    return data


def _value(value: str) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_FIELD_VALUE:
        raise ValueError(f"a field value must be text of at most {MAX_FIELD_VALUE} characters")
    problem = field_value_problem(value)  # (what a route's own header filters refuse)
    if problem is not None:
        raise ValueError(f"a field value {problem}")
    return value.encode("latin-1")


@attrs.define
class FilterRequest:
    """The request a filter sees: ``method``, ``target`` (path and query),
    ``authority``, ``client`` (the connection's peer address), ``headers`` (which the
    filter may change), ``body`` (bytes, for a filter with a ``request_body_limit``,
    which may replace them; else None) and ``notes`` (the request's own dict, for what
    a filter carries from on_request to on_response)."""

    method: str
    target: str
    authority: str
    client: str
    headers: Fields
    body: bytes | None = None
    notes: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class FilterResponse:
    """The response head a filter sees: ``status`` and ``headers`` (changeable)."""

    status: int
    headers: Fields


def installed_plugins() -> dict[str, Any]:
    """Every installed filter plugin, by name (the first of a name wins); one whose
    name or config schema is not usable is left out, with a log line."""
    found: dict[str, Any] = {}
    for plugin in getPlugins(IFilterPlugin):
        try:
            if not isinstance(plugin.name, str) or not isinstance(plugin.config_schema, dict):
                raise TypeError("its name must be a string and its config_schema a dict")
            Draft202012Validator.check_schema(plugin.config_schema)
        except Exception as exc:  # (anything a broken plugin has: it is left out)
            log.warn("filter plugin {plugin!r} left out: {error}", plugin=plugin, error=exc)
            continue
        found.setdefault(plugin.name, plugin)
    return found


def allowed_plugins(allowed: tuple[str, ...] | None) -> dict[str, Any]:
    """The installed filter plugins the gateway may run (``allowed``: by name; None:
    every one installed)."""
    installed = installed_plugins()
    if allowed is None:
        return installed
    return {name: plugin for name, plugin in installed.items() if name in allowed}
