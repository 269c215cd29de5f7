"""The properties the translator fuzzing checks on a translation, and what it measures."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

from tests.translate.fuzz_values import CONTROLLER
from twistgw.api.resource import GATEWAY_GROUP, ObjectKey
from twistgw.dataplane.http.router import Router
from twistgw.hostnames import intersect
from twistgw.routing.ir import Bind, HTTPListener, StreamListener, TLSListener
from twistgw.snapshot import Snapshot
from twistgw.status.store import StatusStore, condition_lists
from twistgw.translate import Translation
from twistgw.translate.selectors import labels_match

TableListener = HTTPListener | TLSListener | StreamListener


def _check_conditions(conditions: Any, where: str) -> None:
    assert isinstance(conditions, list) and conditions, f"{where}: no conditions"
    for condition in conditions:
        assert set(condition) == {
            "type",
            "status",
            "reason",
            "message",
            "observedGeneration",
            "lastTransitionTime",
        }, f"{where}: {condition}"
        assert condition["status"] in ("True", "False", "Unknown"), f"{where}: {condition}"
        for key in ("type", "reason", "message", "lastTransitionTime"):
            assert isinstance(condition[key], str) and condition[key], f"{where}: {condition}"
        assert isinstance(condition["observedGeneration"], int), f"{where}: {condition}"


def check_statuses(translation: Translation) -> None:
    """Every status, with times as the status store adds them, in the Kubernetes shape."""
    store = StatusStore(lambda: 0.0)
    store.update(translation.statuses, ())
    for item in store.document()["items"]:
        where = f"{item['kind']} {item['metadata']}"
        status = item["status"]
        for listener in status.get("listeners") or []:
            assert {"name", "attachedRoutes", "supportedKinds", "conditions"} <= set(listener)
            assert isinstance(listener["attachedRoutes"], int) and listener["attachedRoutes"] >= 0
            assert all("kind" in kind for kind in listener["supportedKinds"]), where
        for parent in status.get("parents") or []:
            assert {"parentRef", "controllerName", "conditions"} <= set(parent), where
            assert parent["controllerName"] == CONTROLLER, where
        for ancestor in status.get("ancestors") or []:
            assert {"ancestorRef", "controllerName", "conditions"} <= set(ancestor), where
        for location, _, conditions in condition_lists(status):
            if location or "conditions" in status:
                _check_conditions(conditions, f"{where} {location}")


def check_table(translation: Translation) -> None:
    """The table crosses the control channel and the config dump, and every port
    serving HTTP compiles into a Router as a worker builds it."""
    table = translation.table
    assert pickle.loads(pickle.dumps(table)) == table
    json.dumps(table.as_dict())
    for bind in table.binds:
        if bind.protocol in ("HTTP", "HTTPS"):
            Router(bind)
        elif bind.protocol == "TLS":
            https = tuple(li for li in bind.listeners if isinstance(li, HTTPListener))
            Router(Bind(bind.address, bind.port, "HTTPS", https))


# --- routes in statuses against routes in the table -------------------------------------


def table_listeners(translation: Translation) -> Iterator[tuple[Bind, TableListener]]:
    for bind in translation.table.binds:
        for listener in bind.listeners:
            yield bind, listener


def served_routes(bind: Bind, listener: TableListener) -> set[tuple[str, str, str]]:
    """(kind, route "namespace/name", hostname) a listener serves; hostname "" for
    TCP and UDP."""
    if isinstance(listener, HTTPListener):
        return {
            (
                "GRPCRoute" if getattr(route, "grpc", False) else "HTTPRoute",
                route.route,
                host.hostname,
            )
            for host in listener.virtual_hosts
            for route in host.routes
        }
    if isinstance(listener, TLSListener):
        return {("TLSRoute", route.route, hostname) for hostname, route in listener.routes}
    if listener.route is None:
        return set()
    kind = "UDPRoute" if bind.protocol == "UDP" else "TCPRoute"
    return {(kind, listener.route.route, "")}


def _accepted_parents(translation: Translation) -> Iterator[tuple[ObjectKey, dict]]:
    """(route key, parentRef) for each parent on which a route is Accepted=True."""
    for status in translation.statuses:
        for parent in status.status.get("parents") or []:
            if any(c["type"] == "Accepted" and c["status"] == "True" for c in parent["conditions"]):
                yield status.key, parent["parentRef"]


def _admits(snapshot: Snapshot, gateway_namespace: str, spec: dict, namespace: str) -> bool:
    """Whether a listener's allowedRoutes.namespaces admits routes from ``namespace``."""
    namespaces = (spec.get("allowedRoutes") or {}).get("namespaces") or {}
    source = namespaces.get("from", "Same")
    if source == "Selector":
        found = snapshot.get("Namespace", "", namespace)
        labels = {**(found.labels if found else {}), "kubernetes.io/metadata.name": namespace}
        return labels_match(namespaces.get("selector") or {}, labels)
    return source == "All" or (source == "Same" and namespace == gateway_namespace)


def _kinds(translation: Translation, gateway: ObjectKey) -> dict[str, set[str]]:
    """Listener name -> route kinds its status lists as supported."""
    for status in translation.statuses:
        if status.key == gateway:
            return {
                li["name"]: {k["kind"] for k in li["supportedKinds"]}
                for li in status.status.get("listeners") or []
            }
    return {}


def _expected_places(
    snapshot: Snapshot, translation: Translation, route: ObjectKey, ref: dict
) -> list[tuple[Bind, TableListener, list[str]]]:
    """The listeners in the table that a route's parentRef selects and that admit the
    route (kind, namespace, hostnames), with the hostnames it must serve there."""
    gateway_key = ObjectKey("Gateway", ref.get("namespace") or route.namespace, ref["name"])
    gateway = snapshot.get("Gateway", gateway_key.namespace, gateway_key.name)
    found = snapshot.get(route.kind, route.namespace, route.name)
    if gateway is None or found is None:
        return []
    specs = {spec["name"]: spec for spec in gateway.spec.get("listeners") or []}
    kinds = _kinds(translation, gateway_key)
    places = []
    for bind, listener in table_listeners(translation):
        namespace, name, section = listener.name.split("/")
        spec = specs.get(section)
        if (namespace, name) != (gateway_key.namespace, gateway_key.name) or spec is None:
            continue
        if ref.get("sectionName") not in (None, section) or ref.get("port") not in (
            None,
            bind.port,
        ):
            continue
        if route.kind not in kinds.get(section, ()):
            continue
        if not _admits(snapshot, gateway_key.namespace, spec, route.namespace):
            continue
        hostnames = intersect(found.spec.get("hostnames") or [], spec.get("hostname"))
        if hostnames:
            places.append((bind, listener, hostnames))
    return places


def check_accepted_routes_served(snapshot: Snapshot, translation: Translation) -> int:
    """A route Accepted=True on a parent is in the table on each listener of that
    parent that admits it, for each hostname it serves there (an HTTPRoute without
    rules: a virtual host without its routes; a TCP or UDP listener serves its oldest
    route: it must serve one). Returns how many such places there were."""
    count = 0
    for route, ref in _accepted_parents(translation):
        if (ref.get("group"), ref.get("kind")) != (GATEWAY_GROUP, "Gateway"):
            continue
        name = f"{route.namespace}/{route.name}"
        found = snapshot.get(route.kind, route.namespace, route.name)
        rules = found.spec.get("rules") if found is not None else None
        for bind, listener, hostnames in _expected_places(snapshot, translation, route, ref):
            served = served_routes(bind, listener)
            where = f"{route} accepted on {ref}, listener {listener.name} of {bind.key}"
            count += 1
            if isinstance(listener, StreamListener):
                assert served, f"{where}: serves no route"
                continue
            for hostname in hostnames:
                if isinstance(listener, HTTPListener) and not rules:
                    hosts = {vhost.hostname for vhost in listener.virtual_hosts}
                    assert hostname in hosts, f"{where}: no virtual host {hostname}"
                else:
                    assert (route.kind, name, hostname) in served, f"{where}: not for {hostname}"
    return count


def check_served_routes_accepted(translation: Translation) -> None:
    """Every route in the table is Accepted=True on a parentRef naming its Gateway."""
    accepted = {
        (
            route.kind,
            f"{route.namespace}/{route.name}",
            ref.get("namespace") or route.namespace,
            ref["name"],
        )
        for route, ref in _accepted_parents(translation)
    }
    for bind, listener in table_listeners(translation):
        gateway_namespace, gateway_name = listener.gateway.split("/")
        for kind, name, _ in served_routes(bind, listener):
            key = (kind, name, gateway_namespace, gateway_name)
            assert key in accepted, f"{kind} {name} served by {listener.name} but not accepted"


# --- what an example reached ------------------------------------------------------------


def reached(translation: Translation) -> set[str]:
    """Labels of what the table holds: ``attached`` when any route is served, and per
    listener protocol whether it has routes (HTTP virtual hosts with routes)."""
    labels = set()
    for bind, listener in table_listeners(translation):
        if not served_routes(bind, listener):
            continue
        labels.add("attached")
        if isinstance(listener, HTTPListener):
            labels.add("virtual hosts" if listener.tls is None else "tls virtual hosts")
        else:
            labels.add(f"{bind.protocol} routes")
    return labels
