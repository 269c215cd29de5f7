"""Table-driven translator tests: each ``cases/*.yaml`` holds input manifests and the
statuses and routing they must translate to.

A case file has:

- ``objects``: the manifests;
- ``options``: optional ``controllerName``, ``addressPool`` (a CIDR), and the data
  plane's feedback: ``bindFailures`` (``"ADDRESS:PORT": why``, ``ADDRESS:PORT/udp`` for
  UDP) and ``unusableAddresses``; ``publishService`` (``NAMESPACE/NAME``, cluster mode);
  ``maxRouteEntries`` and ``maxTableEntries`` (the expansion bounds);
- ``errors``: the messages of the objects rejected as invalid (none when absent);
- ``statuses``: expected statuses, each ``{kind, name, namespace?}`` plus
  ``conditions`` (``Type: Status/Reason``), ``messages`` (``Type: message``, exact),
  ``listeners`` (name -> conditions,
  ``attachedRoutes``, ``supportedKinds``), ``parents`` (list, in parentRefs order, of
  conditions), ``ancestors`` (list of ``{gateway, conditions}``, for policies),
  ``addresses``, ``supportedFeatures`` or ``attachedListenerSets`` — only what is
  given is checked;
  ``absent`` lists ``Kind ns/name`` that must have no status;
- ``routing``: expected binds, ``"ADDRESS:PORT PROTOCOL"`` -> listener name (marked
  ``[terminate]`` or ``[clients MODE]``) -> hostname -> the routes in precedence order as
  ``"ns/route#rule PATHTYPE:PATH -> backend*weight(endpoints), ..."`` (``!``: invalid,
  ``[tls HOST]``: over TLS); for TCP and UDP listeners ``{route: "ns/route#0 ->
  backends"}``.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from twistgw.options import address_pool
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

CASES = sorted((pathlib.Path(__file__).parent / "cases").glob("*.yaml"))
#: Case options that set a TranslateOptions field as they are.
BOUND_OPTIONS = {"maxRouteEntries": "max_route_entries", "maxTableEntries": "max_table_entries"}


def _conditions(conditions: list[dict]) -> dict[str, str]:
    return {c["type"]: f"{c['status']}/{c['reason']}" for c in conditions}


def _backend(backend) -> str:
    """``ns/svc:port*weight``, ``!`` when invalid, ``[tls HOST]`` when reached over TLS."""
    text = f"{backend.name}*{backend.weight}" + ("!" if backend.invalid else "")
    return text + (f" [tls {backend.tls.hostname}]" if backend.tls is not None else "")


def _route_line(route) -> str:
    backends = ", ".join(f"{_backend(b)}({len(b.endpoints)})" for b in route.backends)
    line = f"{route.route}#{route.rule} {route.match.path_type}:{route.match.path}"
    extras = []
    if route.match.method:
        extras.append(route.match.method)
    extras += [f"{name}={value}" for _, name, value in route.match.headers]
    extras += [f"?{name}={value}" for _, name, value in route.match.query]
    if extras:
        line += " [" + " ".join(extras) + "]"
    return f"{line} -> {backends or 'nothing'}"


def _listener_summary(listener) -> dict:
    if hasattr(listener, "route"):  # TCP and UDP: the one route served
        route = listener.route
        if route is None:
            return {"route": None}
        backends = ", ".join(_backend(b) for b in route.backends)
        return {"route": f"{route.route}#{route.rule} -> {backends}"}
    if hasattr(listener, "virtual_hosts"):
        return {
            vhost.hostname: [_route_line(r) for r in vhost.routes]
            for vhost in listener.virtual_hosts
        }
    summary: dict[str, list[str]] = {}  # TLS listeners: SNI hostname -> routes
    for hostname, route in listener.routes:
        backends = ", ".join(_backend(b) for b in route.backends)
        summary.setdefault(hostname, []).append(f"{route.route}#{route.rule} -> {backends}")
    return summary


def _listener_label(listener) -> str:
    """The listener's name, with ``[terminate]`` for a terminating TLS listener and
    ``[clients MODE]`` when it validates client certificates."""
    label = listener.name
    tls = getattr(listener, "tls", None)  # TCP and UDP listeners have none
    if tls is not None and not hasattr(listener, "virtual_hosts"):
        label += " [terminate]"
    if tls is not None and tls.client_validation is not None:
        label += f" [clients {listener.tls.client_validation.mode}]"
    return label


def routing_summary(table) -> dict:
    return {
        f"{bind.address}:{bind.port} {bind.protocol}": {
            _listener_label(listener): _listener_summary(listener) for listener in bind.listeners
        }
        for bind in table.binds
    }


def _check_status(expected: dict, actual: dict, label: str) -> None:
    if "conditions" in expected:
        got = _conditions(actual.get("conditions", []))
        for type_, want in expected["conditions"].items():
            assert got.get(type_) == want, f"{label} condition {type_}: {got}"
    if "messages" in expected:
        got = {c["type"]: c["message"] for c in actual.get("conditions", [])}
        for type_, want in expected["messages"].items():
            assert got.get(type_) == want, f"{label} condition {type_} message"
    if "addresses" in expected:
        got = [
            a["value"] if a["type"] == "IPAddress" else f"{a['type']}:{a['value']}"
            for a in actual["addresses"]
        ]
        assert got == expected["addresses"], label
    if "attachedListenerSets" in expected:
        assert actual["attachedListenerSets"] == expected["attachedListenerSets"], label
    if "supportedFeatures" in expected:
        names = [f["name"] for f in actual["supportedFeatures"]]
        for name in expected["supportedFeatures"]:
            assert name in names, f"{label}: {name} not in {names}"
    for name, want in (expected.get("listeners") or {}).items():
        listener = next(li for li in actual["listeners"] if li["name"] == name)
        _check_status(want, listener, f"{label} listener {name}")
        if "attachedRoutes" in want:
            assert listener["attachedRoutes"] == want["attachedRoutes"], f"{label} {name}"
        if "supportedKinds" in want:
            assert [k["kind"] for k in listener["supportedKinds"]] == want["supportedKinds"]
    if "ancestors" in expected:
        assert len(actual["ancestors"]) == len(expected["ancestors"]), (
            f"{label} ancestors: {actual['ancestors']}"
        )
        for index, (want, got) in enumerate(
            zip(expected["ancestors"], actual["ancestors"], strict=True)
        ):
            assert got["ancestorRef"]["name"] == want["gateway"], f"{label} ancestor {index}"
            _check_status(want, got, f"{label} ancestor {index}")
    if "parents" in expected:
        assert len(actual["parents"]) == len(expected["parents"]), (
            f"{label} parents: {actual['parents']}"
        )
        for index, (want, got) in enumerate(
            zip(expected["parents"], actual["parents"], strict=True)
        ):
            _check_status(want, got, f"{label} parent {index}")


def _bind_key(where: str) -> tuple[str, int, str]:
    """``ADDRESS:PORT`` (TCP) or ``ADDRESS:PORT/udp``."""
    where, _, transport = where.partition("/")
    address, port = where.rsplit(":", 1)
    return address, int(port), transport or "tcp"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: pathlib.Path) -> None:
    case = yaml.safe_load(path.read_text())
    options = case.get("options") or {}
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble(
        {str(path): case["objects"]}
    )
    assert [error.message for error in snapshot.errors] == (case.get("errors") or [])
    translation = translate(
        snapshot,
        TranslateOptions(
            controller_name=options.get("controllerName", "gateway.twistgw.dev/controller"),
            address_pool=address_pool(options["addressPool"]) if "addressPool" in options else (),
            bind_failures={
                _bind_key(where): why for where, why in (options.get("bindFailures") or {}).items()
            },
            unusable_addresses=frozenset(options.get("unusableAddresses") or ()),
            publish_service=tuple(options["publishService"].split("/"))
            if "publishService" in options
            else None,
            **{field: options[key] for key, field in BOUND_OPTIONS.items() if key in options},
        ),
    )
    statuses = {(s.key.kind, s.key.namespace, s.key.name): s.status for s in translation.statuses}
    for expected in case.get("statuses") or []:
        kind = expected["kind"]
        namespace = "" if kind == "GatewayClass" else expected.get("namespace", "default")
        key = (kind, namespace, expected["name"])
        assert key in statuses, f"no status for {key}; have {sorted(statuses)}"
        _check_status(expected, statuses[key], f"{kind} {expected['name']}")
    for absent in case.get("absent") or []:
        kind, _, ref = absent.partition(" ")
        namespace, _, name = ref.rpartition("/")
        assert (kind, namespace, name) not in statuses, f"{absent} should have no status"
    if "routing" in case:
        assert routing_summary(translation.table) == case["routing"]
