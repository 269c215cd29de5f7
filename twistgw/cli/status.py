"""``twistgw status``: a running gateway's /status as a tree, Gateways -> listeners ->
routes, with conditions, attached-route counts and addresses."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from twistgw.cli.printable import printable
from twistgw.status.store import is_wrong

#: How long to wait for the admin endpoint's whole answer, and its largest size.
TIMEOUT = 10.0
MAX_BYTES = 64 * 1024 * 1024


class Unreadable(ValueError):
    """The admin endpoint's answer is not a /status document twistgw can show."""


def fetch(admin: str, token_file: str | None) -> dict[str, Any]:
    """The gateway's /status document, read within ``TIMEOUT`` and ``MAX_BYTES``
    (raises OSError or ValueError)."""
    request = urllib.request.Request(admin.rstrip("/") + "/status")
    if token_file:
        with open(token_file) as handle:
            request.add_header("Authorization", f"Bearer {handle.read().strip()}")
    deadline = time.monotonic() + TIMEOUT
    body = bytearray()
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (an operator's URL)
        while chunk := response.read1(65536):
            body += chunk
            if len(body) > MAX_BYTES:
                raise Unreadable(f"the answer is larger than {MAX_BYTES:,} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no whole answer within {TIMEOUT:.0f} s")
    try:
        document = json.loads(body)
    except RecursionError:
        raise Unreadable("the answer nests too deeply") from None
    if not isinstance(document, dict):
        raise Unreadable("the answer is not a /status document")
    return document


def _conditions(conditions: list[dict]) -> tuple[str, bool]:
    """Conditions in a line (those that hold by name, the others with their reason and
    message), and whether any is wrong."""
    words, wrong = [], False
    for condition in conditions:
        if is_wrong(condition):
            wrong = True
            words.append(
                f"{condition['type']}={condition['status']} ({condition.get('reason')}: "
                f"{condition.get('message')})"
            )
        elif condition.get("status") == "True":
            words.append(condition["type"])
    return "  ".join(words), wrong


def _name(item: Mapping[str, Any]) -> str:
    metadata = item.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))


def _parents(route: Mapping[str, Any]) -> Iterator[tuple[str, str, dict]]:
    """(Gateway "ns/name", section or "", the parent's status) of a route's parents."""
    namespace = (route.get("metadata") or {}).get("namespace", "default")
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("kind", "Gateway") == "Gateway":
            yield (
                f"{ref.get('namespace') or namespace}/{ref.get('name')}",
                ref.get("sectionName", ""),
                parent,
            )


def render(document: Mapping[str, Any], out: TextIO) -> bool:
    """Print the tree; whether everything is as it should be."""
    items = document.get("items") or []
    healthy = True

    def line(depth: int, text: str, conditions: list[dict]) -> None:
        nonlocal healthy
        shown, wrong = _conditions(conditions)
        healthy = healthy and not wrong
        text = f"{'  ' * depth}{'!! ' if wrong else ''}{text}  {shown}".rstrip()
        out.write(printable(text) + "\n")

    by_kind: dict[str, list[dict]] = {}
    for item in items:
        by_kind.setdefault(item.get("kind", "?"), []).append(item)
    routes = [item for item in items if item.get("kind", "").endswith("Route")]
    shown_routes: set[int] = set()
    for item in by_kind.get("GatewayClass", []):
        line(0, f"GatewayClass {_name(item)}", (item.get("status") or {}).get("conditions") or [])
    for gateway in by_kind.get("Gateway", []):
        status = gateway.get("status") or {}
        addresses = ", ".join(a.get("value", "") for a in status.get("addresses") or [])
        where = f" [{addresses}]" if addresses else ""
        line(0, f"Gateway {_name(gateway)}{where}", status.get("conditions") or [])
        for listener in status.get("listeners") or []:
            text = f"listener {listener.get('name')} ({listener.get('attachedRoutes', 0)} routes)"
            line(1, text, listener.get("conditions") or [])
        for index, route in enumerate(routes):
            for parent, section, parent_status in _parents(route):
                if parent == _name(gateway):
                    shown_routes.add(index)
                    at = f" (section {section})" if section else ""
                    text = f"{route['kind']} {_name(route)}{at}"
                    line(1, text, parent_status.get("conditions") or [])
    for index, route in enumerate(routes):
        if index not in shown_routes:
            for parent_status in (route.get("status") or {}).get("parents") or []:
                ref = parent_status.get("parentRef") or {}
                text = f"{route['kind']} {_name(route)} -> {ref.get('kind')} {ref.get('name')}"
                line(0, text, parent_status.get("conditions") or [])
    for kind, kind_items in sorted(by_kind.items()):
        if kind in ("GatewayClass", "Gateway") or kind.endswith("Route"):
            continue
        for item in kind_items:
            status = item.get("status") or {}
            line(0, f"{kind} {_name(item)}", status.get("conditions") or [])
            for ancestor in status.get("ancestors") or []:
                ref = ancestor.get("ancestorRef") or {}
                line(
                    1, f"for {ref.get('kind')} {ref.get('name')}", ancestor.get("conditions") or []
                )
    errors = document.get("errors") or []
    if errors:
        healthy = False
        out.write("errors:\n")
        for error in errors:
            out.write(printable(f"  {error.get('source')}: {error.get('message')}") + "\n")
    return healthy


def run(admin: str, token_file: str | None, out: TextIO, err: TextIO) -> int:
    """Ask and print; the exit status (0 all is well, 1 something is wrong, 2 the
    gateway cannot be asked or its answer cannot be shown)."""
    try:
        document = fetch(admin, token_file)
        lines = io.StringIO()
        healthy = render(document, lines)
    except (OSError, ValueError) as exc:
        err.write(printable(f"twistgw status: cannot read {admin}/status: {exc}") + "\n")
        return 2
    except (AttributeError, KeyError, TypeError, RecursionError) as exc:
        err.write(printable(f"twistgw status: {admin}/status is not as expected: {exc!r}") + "\n")
        return 2
    out.write(lines.getvalue())
    return 0 if healthy else 1
