"""Manifest directories read as the gateway reads them, without a gateway: what
``twistgw validate`` and ``twistgw translate`` run on."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from twistgw.api.resource import ObjectKey
from twistgw.options import GatewayOptions, config_limits, translate_options
from twistgw.snapshot import ConfigError, Snapshot
from twistgw.sources.assembly import ObjectAssembler, object_key
from twistgw.sources.generations import GenerationTracker
from twistgw.sources.limits import objects_refusal
from twistgw.sources.manifests import scan_directory
from twistgw.status.store import StatusStore, condition_lists, is_wrong
from twistgw.translate import Translation, translate

#: The ``twistd gateway`` options that change what the translator makes of manifests;
#: the command takes them with the same defaults and checks.
TRANSLATION_OPTIONS = (
    "controller-name",
    "address-pool",
    "route-max-entries",
    "routing-table-max-entries",
    "config-max-file-bytes",
    "config-max-files",
    "config-max-total-bytes",
    "config-max-objects",
)
#: Conditions that say nothing of the manifests (the data plane's own).
NOT_OFFLINE = frozenset({"Programmed"})


def gateway_options(directory: str, given: Mapping[str, Any]) -> GatewayOptions:
    """``twistd gateway``'s options for ``directory`` with ``given`` (option -> value,
    None: the default), checked as the gateway checks them (raises UsageError)."""
    argv = ["--config-dir", directory]
    for name, value in given.items():
        if value is not None:
            argv += [f"--{name}", str(value)]
    options = GatewayOptions()
    options.parseOptions(argv)
    return options


@attrs.frozen
class Loaded:
    """What the directories hold: the snapshot (objects and input errors) and the file
    each object came from."""

    snapshot: Snapshot
    sources: dict[ObjectKey, str]


def load(directories: Sequence[str], options: GatewayOptions) -> Loaded:
    """Every manifest of ``directories`` (each within the gateway's limits), as one
    config directory holding them all."""
    limits = config_limits(options)
    documents: dict[str, tuple[dict, ...]] = {}
    errors: list[ConfigError] = []
    for directory in directories:
        scan = scan_directory(directory, {}, limits)
        counts = (len(parsed.documents) for parsed in scan.files.values())
        refusal = scan.refusal or objects_refusal(counts, limits)
        if refusal is not None:  # (as the gateway refuses a directory: none of it serves)
            errors.append(ConfigError(directory, refusal.message))
            continue
        for name, parsed in scan.files.items():
            path = os.path.join(directory, name)
            if parsed.error is not None:
                errors.append(ConfigError(path, parsed.error))
            documents[path] = parsed.documents
    sources: dict[ObjectKey, str] = {}
    for path in sorted(documents):
        for document in documents[path]:
            if isinstance(document, dict):
                sources.setdefault(object_key(document), path)
    snapshot = ObjectAssembler(GenerationTracker(time.time)).assemble(documents, errors)
    return Loaded(snapshot, sources)


def run_translation(loaded: Loaded, options: GatewayOptions) -> Translation:
    return translate(loaded.snapshot, translate_options(options))


def status_document(loaded: Loaded, translation: Translation) -> dict[str, Any]:
    """What ``/status`` of a gateway serving these manifests would say (its errors
    those of the manifests), with the routing table."""
    store = StatusStore(time.time)
    store.update(translation.statuses, loaded.snapshot.errors)
    return {**store.document(), "routingTable": translation.table.as_dict()}


def problems(loaded: Loaded, translation: Translation) -> Iterator[str]:
    """Every problem, one line each: the file, then the object and the field or the
    condition (of the object, a listener or a parent) that says what is wrong."""
    for error in loaded.snapshot.errors:
        yield f"{error.source}: {error.message}"
    for status in translation.statuses:
        where = f"{loaded.sources.get(status.key, '?')}: {status.key}"
        for _, place, conditions in condition_lists(status.status):
            for condition in conditions:
                if condition["type"] not in NOT_OFFLINE and is_wrong(condition):
                    yield (
                        f"{where}{place}: {condition['type']} {condition['status']} "
                        f"({condition['reason']}): {condition['message']}"
                    )
