"""Reading manifest files: YAML or JSON text in, plain documents or an error out."""

from __future__ import annotations

import json
import os

import attrs
import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@attrs.frozen
class ParsedFile:
    """One file's documents, or the reason it could not be read."""

    signature: tuple[int, int, int]
    documents: tuple[dict, ...] = ()
    error: str | None = None


def parse_documents(text: str, name: str) -> tuple[dict, ...]:
    """The mapping documents of a YAML stream (JSON is YAML too); raises ValueError."""
    try:
        if name.endswith(".json"):
            loaded = json.loads(text)
            documents = loaded if isinstance(loaded, list) else [loaded]
        else:
            documents = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ValueError(" ".join(str(exc).split())) from exc
    out = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"document {index + 1} is a {type(doc).__name__}, not an object")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            out.append(doc)
    return tuple(out)


def signature_of(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def scan_directory(path: str, known: dict[str, tuple[int, int, int]]) -> dict[str, ParsedFile]:
    """Every manifest file in ``path``; files whose signature is in ``known`` unchanged are
    returned without documents (the caller keeps what it parsed before). Blocking: run it
    in a thread."""
    found: dict[str, ParsedFile] = {}
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as exc:
        raise ValueError(f"cannot read config directory {path}: {exc.strerror}") from exc
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(MANIFEST_SUFFIXES):
            continue
        try:
            if not entry.is_file():
                continue
            signature = signature_of(entry.stat())
            if known.get(entry.name) == signature:
                found[entry.name] = ParsedFile(signature)
                continue
            with open(entry.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue  # renamed or removed while we looked
        except (OSError, UnicodeDecodeError) as exc:
            found[entry.name] = ParsedFile((0, 0, 0), error=f"cannot read: {exc}")
            continue
        try:
            found[entry.name] = ParsedFile(signature, parse_documents(text, entry.name))
        except ValueError as exc:
            found[entry.name] = ParsedFile(signature, error=str(exc))
    return found
