"""Request redirects and URL rewrites, as the HTTPRoute filters define them."""

from __future__ import annotations

from twistgw.dataplane.http.router import CompiledRoute
from twistgw.routing.ir import PathModifier, RequestRedirect

WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """``path`` with its matched ``prefix`` (segment-wise) replaced."""
    prefix = prefix.rstrip("/")
    rest = path[len(prefix) :]
    if not rest:
        return replacement or "/"
    base = replacement.rstrip("/")
    return (base + rest) if rest.startswith("/") else (base + "/" + rest)


def rewrite_path(route: CompiledRoute, modifier: PathModifier, path: str) -> str:
    if modifier.type == "ReplaceFullPath":
        return modifier.value
    return replace_prefix(path, route.prefix or "/", modifier.value)


def redirect_location(
    route: CompiledRoute,
    redirect: RequestRedirect,
    scheme: str,
    host_header: str,
    listener_port: int,
    path: str,
    query: str,
) -> bytes:
    """The Location of a RequestRedirect (of ``route``'s rule or of its backendRef),
    with the spec's port rules: an explicit port; else the new scheme's well-known
    port; else the listener's port; and no port in the URL when it is the scheme's
    well-known one."""
    new_scheme = redirect.scheme or scheme
    if redirect.hostname:
        host = redirect.hostname
    else:
        host = host_header
        if host.startswith("["):
            host = host[: host.find("]") + 1]
        elif ":" in host:
            host = host.rsplit(":", 1)[0]
    if redirect.port is not None:
        port = redirect.port
    elif redirect.scheme:
        port = WELL_KNOWN_PORTS.get(redirect.scheme, listener_port)
    else:
        port = listener_port
    authority = host if WELL_KNOWN_PORTS.get(new_scheme) == port else f"{host}:{port}"
    new_path = rewrite_path(route, redirect.path, path) if redirect.path else path
    location = f"{new_scheme}://{authority}{new_path}"
    if query:
        location += "?" + query
    return location.encode("latin-1")
