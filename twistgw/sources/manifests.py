"""Reading manifest files: YAML or JSON text in, plain documents or an error out.

Every file is read within limits (size, documents, nodes after alias expansion, text
after alias expansion, nesting), so that no manifest, e.g. a few hundred bytes of
nested aliases, can make reading it or anything done with its objects unbounded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import attrs
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.cyaml import CParser
from yaml.resolver import Resolver

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

#: Largest manifest file, in bytes; of a larger one no more than this is read.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Most documents in one file; each item of a ``kind: List`` counts as one.
MAX_DOCUMENTS = 20_000
#: Most nodes (mappings, sequences, keys, values) in one file, each alias counting as
#: a copy of the node it names.
MAX_NODES = 1_000_000
#: Most characters of scalar text in one file, each alias counting as a copy.
MAX_TEXT = MAX_FILE_BYTES
#: Most mappings and sequences nested in one another in a document.
MAX_DEPTH = 100

#: Why a file larger than MAX_FILE_BYTES is refused.
TOO_LARGE = f"refused: larger than {MAX_FILE_BYTES:,} bytes"
#: The signature of a file that could not be read: never taken as unchanged.
UNREAD = (0, 0, 0)


@attrs.frozen
class ParsedFile:
    """One file's documents, or the reason it could not be read."""

    signature: tuple[int, int, int]
    documents: tuple[dict, ...] = ()
    error: str | None = None


class _BoundedLoader(Composer, CParser, SafeConstructor, Resolver):
    """A safe loader that counts nodes and scalar text while composing, an alias as a
    copy of its anchor's node, and refuses a stream past MAX_NODES, MAX_TEXT or
    MAX_DEPTH before anything is constructed (merge keys included).

    libyaml parses (several times faster than PyYAML's parser); composing is PyYAML's,
    with the counting added."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._text = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, text) under it

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors:  # else the composer reports it undefined
                size = self._sizes.get(event.anchor)
                if size is None:
                    raise _refused(event, f"alias *{event.anchor} is inside its own anchor")
                self._spend(event, *size)
            return super().compose_node(parent, index)
        scalar = isinstance(event, yaml.ScalarEvent)
        if self._depth == MAX_DEPTH and not scalar:
            raise _refused(event, f"nested deeper than {MAX_DEPTH} levels")
        if event.anchor is not None:
            self._sizes.pop(event.anchor, None)  # being composed: not yet usable
        before = (self._nodes, self._text)
        self._spend(event, 1, len(event.value) if scalar else 0)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = (self._nodes - before[0], self._text - before[1])
        return node

    def _spend(self, event: yaml.Event, nodes: int, text: int) -> None:
        self._nodes += nodes
        self._text += text
        if self._nodes > MAX_NODES:
            raise _refused(event, f"more than {MAX_NODES:,} nodes (aliases count as copies)")
        if self._text > MAX_TEXT:
            raise _refused(
                event, f"more than {MAX_TEXT:,} characters of text (aliases count as copies)"
            )


def _refused(event: yaml.Event, reason: str) -> ValueError:
    return ValueError(f"refused: {reason}, at line {event.start_mark.line + 1}")


def _check_json(value: object) -> None:
    """Raise ValueError if parsed JSON exceeds MAX_NODES or MAX_DEPTH (it has no aliases,
    and its text is bounded by the file's size)."""
    nodes = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(f"refused: more than {MAX_NODES:,} nodes")
        if isinstance(item, dict):
            nodes += len(item)  # the keys
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth == MAX_DEPTH:
            raise ValueError(f"refused: nested deeper than {MAX_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)


def _json_documents(text: str) -> list[object]:
    try:
        loaded = json.loads(text)
    except RecursionError:
        raise ValueError(f"refused: nested deeper than {MAX_DEPTH} levels") from None
    _check_json(loaded)
    return loaded if isinstance(loaded, list) else [loaded]


def parse_documents(text: str, name: str) -> tuple[dict, ...]:
    """The mapping documents of a YAML stream (JSON is YAML too), within the limits
    above; raises ValueError."""
    out: list[dict] = []
    count = 0
    try:
        if name.endswith(".json"):
            documents: Iterable[object] = _json_documents(text)
        else:
            documents = yaml.load_all(text, Loader=_BoundedLoader)
        for index, doc in enumerate(documents):
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
            )
            count += len(items) if isinstance(items, list) else 1
            if count > MAX_DOCUMENTS:
                raise ValueError(f"refused: more than {MAX_DOCUMENTS:,} documents")
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"document {index + 1} is a {type(doc).__name__}, not an object")
            if isinstance(items, list):
                out.extend(item for item in items if isinstance(item, dict))
            else:
                out.append(doc)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ValueError(" ".join(str(exc).split())) from exc
    return tuple(out)


def signature_of(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def scan_directory(path: str, known: dict[str, tuple[int, int, int]]) -> dict[str, ParsedFile]:
    """Every manifest file in ``path``; files whose signature is in ``known`` unchanged are
    returned without documents or error (the caller keeps what it had). Blocking: run it
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
            with open(entry.path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                found[entry.name] = ParsedFile(signature, error=TOO_LARGE)
                continue
            text = data.decode("utf-8")
        except FileNotFoundError:
            continue  # renamed or removed while we looked
        except (OSError, UnicodeDecodeError) as exc:
            found[entry.name] = ParsedFile(UNREAD, error=f"cannot read: {exc}")
            continue
        try:
            found[entry.name] = ParsedFile(signature, parse_documents(text, entry.name))
        except ValueError as exc:
            found[entry.name] = ParsedFile(signature, error=str(exc))
    return found
