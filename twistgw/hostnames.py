"""Gateway API hostname rules: wildcard matching and listener/route intersection."""

from __future__ import annotations

from collections.abc import Sequence


def wildcard_matches(host: str, pattern: str) -> bool:
    """Whether ``host`` falls under ``pattern`` ("*.example.com" matches one or more
    labels before ".example.com", never "example.com" itself). ``host`` may itself be a
    wildcard, then it must be at least as specific."""
    if not pattern.startswith("*."):
        return host == pattern
    suffix = pattern[1:]
    return host.endswith(suffix) and len(host) > len(suffix)


def intersect(route_hostnames: Sequence[str], listener_hostname: str | None) -> list[str]:
    """The hostnames a route serves on a listener; [] when they do not intersect.

    "*" stands for any host (neither side names one)."""
    if not listener_hostname:
        return list(route_hostnames) or ["*"]
    if not route_hostnames:
        return [listener_hostname]
    out: dict[str, None] = {}  # (ordered, each once: a route may list 1,024 hostnames)
    for host in route_hostnames:
        if host == listener_hostname or wildcard_matches(host, listener_hostname):
            out[host] = None
        elif host.startswith("*.") and wildcard_matches(listener_hostname, host):
            out[listener_hostname] = None
    return list(out)


def specificity(pattern: str | None) -> tuple[int, int]:
    """Sort key, most specific first: exact names, then wildcards by length, then any."""
    if not pattern or pattern == "*":
        return (2, 0)
    if pattern.startswith("*."):
        return (1, -len(pattern))
    return (0, -len(pattern))


def host_matches(host: str, pattern: str | None) -> bool:
    """Whether a request's host is served by a hostname pattern (None or "*": any)."""
    if not pattern or pattern == "*":
        return True
    return wildcard_matches(host, pattern)
