"""Bounds on the configuration input that the operator sets (``--config-max-*``), and
the names under which refusals are counted (``twistgw_config_refused_total{limit}``).

Per file: its size (``file_bytes``) and the fixed bounds of ``manifests`` (``documents``,
``nodes``, ``text``, ``depth``). Across the config directory: the number of manifest
files (``files``), their total size (``total_bytes``) and the objects they hold
(``objects``). A file past a per-file bound is refused by itself; a directory past an
across-files bound is refused as a whole (see ``directory``).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

#: Limits a single file can break.
FILE_BYTES = "file_bytes"
DOCUMENTS = "documents"
NODES = "nodes"
TEXT = "text"
DEPTH = "depth"
#: Limits the config directory as a whole can break.
FILES = "files"
TOTAL_BYTES = "total_bytes"
OBJECTS = "objects"

PER_FILE = (FILE_BYTES, DOCUMENTS, NODES, TEXT, DEPTH)
ACROSS_FILES = (FILES, TOTAL_BYTES, OBJECTS)


@attrs.frozen
class ConfigLimits:
    """The operator's bounds on the config directory (defaults: see docs/operations.md)."""

    #: Largest manifest file, in bytes; also its most characters of scalar text, aliases
    #: counted as copies.
    max_file_bytes: int = 4 * 1024 * 1024
    #: Most manifest files in the directory.
    max_files: int = 10_000
    #: Most bytes in all manifest files together (files over max_file_bytes not counted).
    max_total_bytes: int = 32 * 1024 * 1024
    #: Most objects (documents, each item of a ``kind: List`` one) in all files together.
    max_objects: int = 50_000


class LimitExceeded(ValueError):
    """A file refused for breaking a limit; ``limit`` is one of PER_FILE."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@attrs.frozen
class Refusal:
    """Why the config directory as a whole was refused: a limit of ACROSS_FILES."""

    limit: str
    message: str


def too_many_files(limits: ConfigLimits) -> Refusal:
    return Refusal(
        FILES, f"refused: more than {limits.max_files:,} manifest files (--config-max-files)"
    )


def total_bytes_refusal(sizes: Iterable[int], limits: ConfigLimits) -> Refusal | None:
    """The refusal of a directory whose files (of these sizes) are too large together."""
    total = sum(size for size in sizes if size <= limits.max_file_bytes)
    if total <= limits.max_total_bytes:
        return None
    return Refusal(
        TOTAL_BYTES,
        f"refused: the manifest files total {total:,} bytes, more than "
        f"{limits.max_total_bytes:,} (--config-max-total-bytes)",
    )


def objects_refusal(counts: Iterable[int], limits: ConfigLimits) -> Refusal | None:
    """The refusal of a directory whose files (holding these numbers of objects) hold
    too many together."""
    total = sum(counts)
    if total <= limits.max_objects:
        return None
    return Refusal(
        OBJECTS,
        f"refused: the manifest files hold {total:,} objects, more than "
        f"{limits.max_objects:,} (--config-max-objects)",
    )
