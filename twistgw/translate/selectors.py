"""Which namespaces a listener admits routes from (allowedRoutes.namespaces)."""

from __future__ import annotations

from typing import Any

from twistgw.snapshot import Snapshot


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_allowed(snapshot: Snapshot, listener, namespace: str) -> bool:
    spec = (listener.spec.get("allowedRoutes") or {}).get("namespaces") or {}
    return namespace_selected(snapshot, spec, namespace, listener.namespace)


def namespace_selected(
    snapshot: Snapshot, spec: dict[str, Any], namespace: str, own: str, default: str = "Same"
) -> bool:
    """Whether ``namespace`` is admitted by a ``{from, selector}`` block (allowedRoutes
    or allowedListeners namespaces); ``Same`` means ``own``, ``None`` admits none."""
    source = spec.get("from", default)
    if source == "All":
        return True
    if source == "Same":
        return namespace == own
    if source == "Selector":
        ns = snapshot.get("Namespace", "", namespace)
        labels = dict(ns.labels) if ns else {}
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels_match(spec.get("selector") or {}, labels)
    return False
