"""Route filters (HTTPRoute and GRPCRoute) compiled to IR, and the error for rules
that use what twistgw does not implement."""

from __future__ import annotations

from typing import Any

from twistgw.routing import ir


class UnsupportedRule(Exception):
    """A rule using something twistgw does not implement (reason UnsupportedValue)."""


def _header_modifier(spec: dict[str, Any] | None) -> ir.HeaderModifier | None:
    if not spec:
        return None
    return ir.HeaderModifier(
        set=tuple((h["name"], h["value"]) for h in spec.get("set") or []),
        add=tuple((h["name"], h["value"]) for h in spec.get("add") or []),
        remove=tuple(spec.get("remove") or []),
    )


def _path_modifier(spec: dict[str, Any] | None, match: ir.Match) -> ir.PathModifier | None:
    if not spec:
        return None
    if spec["type"] == "ReplaceFullPath":
        return ir.PathModifier("ReplaceFullPath", spec.get("replaceFullPath") or "/")
    if match.path_type != "PathPrefix":
        raise UnsupportedRule("ReplacePrefixMatch needs a PathPrefix match")
    return ir.PathModifier("ReplacePrefixMatch", spec.get("replacePrefixMatch") or "/")


def _cors(spec: dict[str, Any]) -> ir.CORS:
    """A validated ``cors`` (maxAge defaulted) as IR."""
    return ir.CORS(
        allow_origins=tuple(spec.get("allowOrigins") or ()),
        allow_methods=tuple(spec.get("allowMethods") or ()),
        allow_headers=tuple(spec.get("allowHeaders") or ()),
        expose_headers=tuple(spec.get("exposeHeaders") or ()),
        allow_credentials=bool(spec.get("allowCredentials")),
        max_age=spec["maxAge"],
    )


def compile_filters(
    specs: list[dict[str, Any]] | None,
    match: ir.Match,
    allowed: frozenset[str],
    mirrors: tuple[ir.Mirror, ...] = (),
    python: tuple[ir.PythonFilter, ...] = (),
) -> ir.Filters:
    """The IR of a rule's (or a backendRef's) filters, with the rule's ``mirrors`` and
    ExtensionRef filters (``python``; both resolved apart: see mirrors.py and
    extensions.py); raises UnsupportedRule for a type outside ``allowed`` or a
    combination twistgw cannot do."""
    fields: dict[str, Any] = {"mirrors": mirrors, "python": python}
    for spec in specs or []:
        kind = spec["type"]
        if kind not in allowed:
            raise UnsupportedRule(f"filter type {kind} is not supported")
        if kind == "RequestHeaderModifier":
            fields["request_headers"] = _header_modifier(spec.get("requestHeaderModifier"))
        elif kind == "ResponseHeaderModifier":
            fields["response_headers"] = _header_modifier(spec.get("responseHeaderModifier"))
        elif kind == "RequestRedirect":
            red = spec.get("requestRedirect") or {}
            fields["redirect"] = ir.RequestRedirect(
                scheme=red.get("scheme"),
                hostname=red.get("hostname"),
                port=red.get("port"),
                path=_path_modifier(red.get("path"), match),
                status_code=red.get("statusCode", 302),
            )
        elif kind == "URLRewrite":
            rew = spec.get("urlRewrite") or {}
            fields["rewrite"] = ir.URLRewrite(
                hostname=rew.get("hostname"), path=_path_modifier(rew.get("path"), match)
            )
        elif kind == "CORS":
            fields["cors"] = _cors(spec["cors"])
    if "redirect" in fields and "rewrite" in fields:
        raise UnsupportedRule("RequestRedirect and URLRewrite cannot be combined")
    return ir.Filters(**fields)
