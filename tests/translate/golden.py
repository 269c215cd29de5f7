"""Golden translator cases: run one ``NAME.in.yaml`` and render everything the
translator gives back as the stable YAML text of ``NAME.out.yaml``."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

from twistgw.options import address_pool
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, Translation, translate

CASES_DIR = pathlib.Path(__file__).parent / "cases"
#: Case options that set a TranslateOptions field as they are.
BOUND_OPTIONS = {
    "maxRouteEntries": "max_route_entries",
    "maxTableEntries": "max_table_entries",
    "filterPlugins": "filter_plugins",  # plugin name -> its config schema
}
PEM_START = "-----BEGIN"


def in_paths() -> list[pathlib.Path]:
    return sorted(CASES_DIR.glob("*.in.yaml"))


def out_path(in_path: pathlib.Path) -> pathlib.Path:
    return in_path.with_name(in_path.name.removesuffix(".in.yaml") + ".out.yaml")


def _bind_key(where: str) -> tuple[str, int, str]:
    """``ADDRESS:PORT`` (TCP) or ``ADDRESS:PORT/udp``."""
    where, _, transport = where.partition("/")
    address, port = where.rsplit(":", 1)
    return address, int(port), transport or "tcp"


def translate_options(options: dict[str, Any]) -> TranslateOptions:
    """The TranslateOptions a case's ``options`` describe."""
    return TranslateOptions(
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
    )


def _stable(value: Any) -> Any:
    """PEM text (certificates, CA bundles) replaced by a short digest of it."""
    if isinstance(value, Mapping):
        return {key: _stable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_stable(item) for item in value]
    if isinstance(value, str) and value.startswith(PEM_START):
        return f"<pem sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}>"
    return value


def _output(errors: list[str], translation: Translation) -> dict[str, Any]:
    """Everything translated: validation errors (in order), every status and the
    assigned addresses (by object, sorted), and the whole routing table."""
    statuses = sorted(translation.statuses, key=lambda s: s.key)
    return _stable(
        {
            "errors": errors,
            "statuses": [
                {
                    "kind": s.key.kind,
                    "namespace": s.key.namespace,
                    "name": s.key.name,
                    "status": s.status,
                }
                for s in statuses
            ],
            "assignedAddresses": {
                f"{key.kind} {key.namespace}/{key.name}": address
                for key, address in sorted(translation.assigned_addresses.items())
            },
            "routing": translation.table.as_dict(),
        }
    )


def translate_case(in_path: pathlib.Path) -> tuple[list[str], Translation]:
    """The messages of the case's invalid objects, and the translation of the rest."""
    case = yaml.safe_load(in_path.read_text())
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble(
        {in_path.name: case["objects"]}
    )
    translation = translate(snapshot, translate_options(case.get("options") or {}))
    return [error.message for error in snapshot.errors], translation


def run_case(in_path: pathlib.Path) -> str:
    """The case's whole output as YAML text (mapping keys sorted, lists as emitted)."""
    output = _output(*translate_case(in_path))
    return yaml.safe_dump(output, sort_keys=True, allow_unicode=True, width=float("inf"))
