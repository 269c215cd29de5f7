"""Reading manifest files: YAML or JSON text in, plain documents or an error out.

Every file is read within limits (size, documents, nodes after alias expansion, text
after alias expansion, nesting), so that no manifest, e.g. a few hundred bytes of
nested aliases, can make reading it or anything done with its objects unbounded; and
the directory within the operator's limits across files (count, total size), checked
before any file is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

import attrs
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.cyaml import CParser
from yaml.resolver import Resolver

from twistgw.sources.limits import (
    DEPTH,
    DOCUMENTS,
    FILE_BYTES,
    NODES,
    TEXT,
    ConfigLimits,
    LimitExceeded,
    Refusal,
    too_many_files,
    total_bytes_refusal,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

#: The operator's limits when none are given (``twistd gateway``'s defaults).
DEFAULT_LIMITS = ConfigLimits()
#: Largest manifest file by default, in bytes (``--config-max-file-bytes``); of a larger
#: one no more than this is read. A file's scalar text is bounded by the same number.
MAX_FILE_BYTES = DEFAULT_LIMITS.max_file_bytes
#: Most documents in one file; each item of a ``kind: List`` counts as one.
MAX_DOCUMENTS = 20_000
#: Most nodes (mappings, sequences, keys, values) in one file, each alias counting as
#: a copy of the node it names.
MAX_NODES = 1_000_000
#: Most mappings and sequences nested in one another in a document.
MAX_DEPTH = 100

#: The signature of a file that could not be read: never taken as unchanged.
UNREAD = (0, 0, 0)


def too_large(limits: ConfigLimits) -> str:
    """Why a file larger than ``limits.max_file_bytes`` is refused."""
    return f"refused: larger than {limits.max_file_bytes:,} bytes (--config-max-file-bytes)"


@attrs.frozen
class ParsedFile:
    """One file's documents, or the reason it could not be read (and, when it broke
    one, the limit: one of ``limits.PER_FILE``)."""

    signature: tuple[int, int, int]
    documents: tuple[dict, ...] = ()
    error: str | None = None
    limit: str | None = None


@attrs.frozen
class DirectoryScan:
    """What a scan of the config directory found: its manifest files, or why the
    directory as a whole was refused (then nothing was read)."""

    files: dict[str, ParsedFile] = attrs.field(factory=dict)
    refusal: Refusal | None = None


class _BoundedLoader(Composer, CParser, SafeConstructor, Resolver):
    """A safe loader that counts nodes and scalar text while composing, an alias as a
    copy of its anchor's node, and refuses a stream past MAX_NODES, ``max_text`` or
    MAX_DEPTH before anything is constructed (merge keys included).

    libyaml parses (several times faster than PyYAML's parser); composing is PyYAML's,
    with the counting added."""

    def __init__(self, stream: str, max_text: int) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._max_text = max_text
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
                    raise _refused(event, NODES, f"alias *{event.anchor} is inside its own anchor")
                self._spend(event, *size)
            return super().compose_node(parent, index)
        scalar = isinstance(event, yaml.ScalarEvent)
        if self._depth == MAX_DEPTH and not scalar:
            raise _refused(event, DEPTH, f"nested deeper than {MAX_DEPTH} levels")
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
            raise _refused(event, NODES, f"more than {MAX_NODES:,} nodes (aliases count as copies)")
        if self._text > self._max_text:
            raise _refused(
                event,
                TEXT,
                f"more than {self._max_text:,} characters of text (aliases count as copies)",
            )


def _refused(event: yaml.Event, limit: str, reason: str) -> LimitExceeded:
    return LimitExceeded(limit, f"refused: {reason}, at line {event.start_mark.line + 1}")


def _yaml_documents(text: str, max_text: int) -> Iterator[object]:
    """The documents of a YAML stream, each composed within the limits."""
    loader = _BoundedLoader(text, max_text)
    try:
        while loader.check_data():
            yield loader.get_data()
    finally:
        loader.dispose()


def _check_json(value: object) -> None:
    """Raise ValueError if parsed JSON exceeds MAX_NODES or MAX_DEPTH (it has no aliases,
    and its text is bounded by the file's size)."""
    nodes = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise LimitExceeded(NODES, f"refused: more than {MAX_NODES:,} nodes")
        if isinstance(item, dict):
            nodes += len(item)  # the keys
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth == MAX_DEPTH:
            raise LimitExceeded(DEPTH, f"refused: nested deeper than {MAX_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)


def _json_documents(text: str) -> list[object]:
    try:
        loaded = json.loads(text)
    except RecursionError:
        raise LimitExceeded(DEPTH, f"refused: nested deeper than {MAX_DEPTH} levels") from None
    _check_json(loaded)
    return loaded if isinstance(loaded, list) else [loaded]


def parse_documents(
    text: str, name: str, limits: ConfigLimits = DEFAULT_LIMITS
) -> tuple[dict, ...]:
    """The mapping documents of a YAML stream (JSON is YAML too), within the limits
    above; raises ValueError (LimitExceeded for a limit)."""
    out: list[dict] = []
    count = 0
    try:
        if name.endswith(".json"):
            documents: Iterable[object] = _json_documents(text)
        else:
            documents = _yaml_documents(text, limits.max_file_bytes)
        for index, doc in enumerate(documents):
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
            )
            count += len(items) if isinstance(items, list) else 1
            if count > MAX_DOCUMENTS:
                raise LimitExceeded(DOCUMENTS, f"refused: more than {MAX_DOCUMENTS:,} documents")
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


def _manifest_entries(path: str, most: int) -> list[os.DirEntry] | None:
    """The manifest files in ``path`` (not hidden, not directories), or None when there
    are more than ``most``: the listing stops there."""
    entries: list[os.DirEntry] = []
    try:
        with os.scandir(path) as listing:
            for entry in listing:
                if entry.name.startswith(".") or not entry.name.endswith(MANIFEST_SUFFIXES):
                    continue
                try:
                    if not entry.is_file():
                        continue
                except OSError:
                    pass  # counted; reading it will say what is wrong
                entries.append(entry)
                if len(entries) > most:
                    return None
    except OSError as exc:
        raise ValueError(f"cannot read config directory {path}: {exc.strerror}") from exc
    return entries


def scan_directory(
    path: str, known: dict[str, tuple[int, int, int]], limits: ConfigLimits = DEFAULT_LIMITS
) -> DirectoryScan:
    """Every manifest file in ``path``; files whose signature is in ``known`` unchanged are
    returned without documents or error (the caller keeps what it had). A directory over
    ``limits.max_files`` or ``limits.max_total_bytes`` is refused before any file is read.
    Blocking: run it in a thread."""
    entries = _manifest_entries(path, limits.max_files)
    if entries is None:
        return DirectoryScan(refusal=too_many_files(limits))
    found: dict[str, ParsedFile] = {}
    listed: dict[str, tuple[os.DirEntry, tuple[int, int, int]]] = {}
    for entry in sorted(entries, key=lambda entry: entry.name):
        try:
            listed[entry.name] = (entry, signature_of(entry.stat()))
        except FileNotFoundError:
            continue  # renamed or removed while we looked
        except OSError as exc:
            found[entry.name] = ParsedFile(UNREAD, error=f"cannot read: {exc}")
    refusal = total_bytes_refusal((signature[1] for _, signature in listed.values()), limits)
    if refusal is not None:
        return DirectoryScan(refusal=refusal)
    for name, (entry, signature) in listed.items():
        if known.get(name) == signature:
            found[name] = ParsedFile(signature)
            continue
        parsed = _read(entry, signature, limits)
        if parsed is not None:
            found[name] = parsed
    return DirectoryScan(dict(sorted(found.items())))


def _read(
    entry: os.DirEntry, signature: tuple[int, int, int], limits: ConfigLimits
) -> ParsedFile | None:
    """One file read and parsed within the limits (None: it is gone)."""
    try:
        with open(entry.path, "rb") as handle:
            data = handle.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            return ParsedFile(signature, error=too_large(limits), limit=FILE_BYTES)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None  # renamed or removed while we looked
    except (OSError, UnicodeDecodeError) as exc:
        return ParsedFile(UNREAD, error=f"cannot read: {exc}")
    try:
        return ParsedFile(signature, parse_documents(text, entry.name, limits))
    except LimitExceeded as exc:
        return ParsedFile(signature, error=str(exc), limit=exc.limit)
    except ValueError as exc:
        return ParsedFile(signature, error=str(exc))
