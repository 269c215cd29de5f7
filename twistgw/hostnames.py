"""Gateway API hostname rules: wildcard matching and listener/route intersection."""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


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


class WildcardIndex(Generic[T]):
    """Values by ``*.`` wildcard, looked up by host, most specific first. A lookup
    costs one slice and one dict lookup per distinct wildcard length configured,
    whatever the host's length or number of labels (a client chooses those)."""

    __slots__ = ("_by_suffix", "_lengths")

    def __init__(self) -> None:
        self._by_suffix: dict[str, T] = {}  # "*.example.com" as ".example.com"
        self._lengths: list[int] = []  # the suffixes' lengths, ascending

    def add(self, pattern: str, value: T) -> None:
        """Index ``value`` under ``pattern`` ("*.example.com"); the first one stays."""
        suffix = pattern[1:]
        if suffix not in self._by_suffix:
            self._by_suffix[suffix] = value
            if len(suffix) not in self._lengths:
                insort(self._lengths, len(suffix))

    def __bool__(self) -> bool:
        return bool(self._by_suffix)

    def get(self, pattern: str) -> T | None:
        """The value indexed under ``pattern`` itself, if any."""
        return self._by_suffix.get(pattern[1:])

    def matching(self, host: str) -> Iterator[T]:
        """The values whose wildcard covers ``host`` (one or more labels before the
        suffix), the longest suffix first."""
        by_suffix = self._by_suffix
        for length in reversed(self._lengths):
            if len(host) > length:
                found = by_suffix.get(host[-length:])
                if found is not None:
                    yield found
