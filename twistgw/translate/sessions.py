"""A route rule's ``sessionPersistence`` (GEP-1619) as IR, and the values of it the
schema accepts but the data plane cannot honour (the rule is refused with the field
and the reason)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from twistgw.api.resource import Resource
from twistgw.api.validation import parse_duration, path_problem
from twistgw.httpfields import CONNECTION_FIELDS
from twistgw.routing import ir

#: What a cookie without a ``name`` is called: this, then 12 hex digits of a hash of
#: the rule's scope (its route's kind, namespace and name and the rule's name or
#: index), so each rule's name is its own and stays the same across restarts.
GENERATED_COOKIE_PREFIX = "twistgw-session-"
#: Header names a session header cannot have: the fields the codecs own (framing,
#: connection, Host), which the exchange never sees in a request nor may set in a
#: response, and the cookie fields.
RESERVED_HEADERS = CONNECTION_FIELDS | {"cookie", "set-cookie"}


def session_scope(route: Resource, rule_index: int, rule_name: str | None) -> str:
    """What names a rule for its sessions: ``KIND/NAMESPACE/NAME/RULE``, RULE being
    the rule's name, or ``[INDEX]`` for a rule without one."""
    return f"{route.kind}/{route.namespace}/{route.name}/{rule_name or f'[{rule_index}]'}"


def session_of(
    route: Resource, rule_index: int, rule: Mapping[str, Any]
) -> ir.SessionPersistence | None:
    """A validated rule's sessionPersistence as IR (defaults filled in by validation);
    None when it has none."""
    spec = rule.get("sessionPersistence")
    if spec is None:
        return None
    scope = session_scope(route, rule_index, rule.get("name"))
    timeout = spec.get("absoluteTimeout")
    seconds = parse_duration(timeout) if timeout is not None else None
    if spec["type"] == "Header":
        return ir.SessionPersistence("Header", spec["header"]["name"], scope, seconds)
    cookie = spec["cookie"]
    name = cookie.get("name") or (
        GENERATED_COOKIE_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:12]
    )
    return ir.SessionPersistence(
        "Cookie",
        name,
        scope,
        seconds,
        permanent=cookie["lifetimeType"] == "Permanent",
        path=cookie["path"],
    )


def session_problems(rule: Mapping[str, Any], where: str) -> list[str]:
    """``field: problem`` for what the data plane cannot honour in a validated rule's
    sessionPersistence: a cookie Path a user agent would not keep as written (RFC 6265
    §5.2.4: it must start with "/"; no controls, ";" or what is not visible ASCII) and
    a header name the gateway's codecs own."""
    spec = rule.get("sessionPersistence")
    if spec is None:
        return []
    at = f"{where}.sessionPersistence"
    problems = []
    cookie = spec.get("cookie")
    if cookie is not None:
        path = cookie["path"]
        problem = path_problem(path)
        if problem is None and ";" in path:
            problem = "contains ';', which would end the cookie's Path"
        if problem is None and not path.startswith("/"):
            problem = "must begin with '/' (a user agent replaces any other Path with its own)"
        if problem is not None:
            problems.append(f"{at}.cookie.path: {problem}")
    header = spec.get("header")
    if header is not None and header["name"].lower() in RESERVED_HEADERS:
        problems.append(
            f"{at}.header.name: {header['name']!r} is a field the gateway handles itself, "
            "not one it can carry a session in"
        )
    return problems
