"""ExtensionRef filters: each names a PythonFilter (``gateway.twistgw.dev``) whose
installed plugin and config the data plane runs; a reference that cannot be resolved
is noted for the route's ResolvedRefs condition and the rule answers 500."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from twistgw.api.resource import POLICY_GROUP, Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.references import BackendError

#: The config problems reported at most (a schema can find many).
MAX_PROBLEMS = 3


def _config_problem(schema: Mapping[str, Any], config: Any) -> str | None:
    try:
        validator = Draft202012Validator(schema)
        errors = sorted(
            validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))
        )
    except Exception as exc:  # (a plugin's schema is its author's: whatever breaks in it)
        return f"the plugin's own schema cannot be used: {str(exc)[:200]}"
    if not errors:
        return None
    shown = "; ".join(
        f"{'.'.join(map(str, e.absolute_path)) or '(config)'}: {e.message[:200]}"
        for e in errors[:MAX_PROBLEMS]
    )
    return f"spec.config does not fit the plugin's schema: {shown}"


def compile_extensions(
    snapshot: Snapshot,
    route: Resource,
    filters: list[dict[str, Any]] | None,
    analysis: RouteAnalysis,
    plugins: Mapping[str, Mapping[str, Any]],
) -> tuple[ir.PythonFilter, ...]:
    """The PythonFilters of a rule's ExtensionRef filters, in order. ``plugins``: the
    plugins the gateway may run, by name, with their config schemas."""
    found = []
    for spec in filters or ():
        if spec.get("type") != "ExtensionRef":
            continue
        ref = spec["extensionRef"]
        name = f"{route.namespace}/{ref['name']}"
        problem = None
        if (ref["group"], ref["kind"]) != (POLICY_GROUP, "PythonFilter"):
            problem = (
                f"ExtensionRef to {ref['kind']} of {ref['group'] or 'the core group'}: twistgw "
                f"runs PythonFilters ({POLICY_GROUP})"
            )
            analysis.ref_error = analysis.ref_error or BackendError("InvalidKind", problem)
            found.append(ir.PythonFilter(name, problem=problem))
            continue
        target = snapshot.get("PythonFilter", route.namespace, ref["name"])
        if target is None:
            problem = f"PythonFilter {name} does not exist"
        else:
            plugin = target.spec["plugin"]
            if plugin not in plugins:
                problem = (
                    f"PythonFilter {name} names plugin {plugin!r}, which is not installed "
                    "or not allowed (--filter-plugins)"
                )
            else:
                problem = _config_problem(plugins[plugin], target.spec.get("config") or {})
                if problem is not None:
                    problem = f"PythonFilter {name}: {problem}"
        if problem is not None:
            analysis.ref_error = analysis.ref_error or BackendError("BackendNotFound", problem)
            found.append(ir.PythonFilter(name, problem=problem))
            continue
        config = json.dumps(target.spec.get("config") or {}, sort_keys=True)
        found.append(ir.PythonFilter(name, target.spec["plugin"], config))
    return tuple(found)
