"""The config directory's limits across files (``--config-max-files``,
``--config-max-total-bytes``, ``--config-max-objects``) on a DirectorySource whose
thread and clock are synchronous: a directory past one is refused as a whole, reported
by the directory and the limit, the last good configuration stays in force, and the
next state within the limits applies. Refusals are counted once each."""

from __future__ import annotations

import os
import pathlib

import pytest
import yaml
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twistgw.snapshot import ConfigError, Snapshot
from twistgw.sources.directory import DirectorySource
from twistgw.sources.limits import ConfigLimits
from twistgw.sources.manifests import scan_directory

KEPT = "the last configuration within the limits stays in force"


class _InlinePool:
    """A thread pool that runs each call at once, in the calling thread."""

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs) -> None:  # noqa: N802
        try:
            result = function(*args, **kwargs)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _InlineReactor(Clock):
    def getThreadPool(self) -> _InlinePool:  # noqa: N802
        return _InlinePool()

    def callFromThread(self, function, *args, **kwargs) -> None:  # noqa: N802
        function(*args, **kwargs)


class Watched:
    """A DirectorySource on ``directory`` with what it handed out recorded."""

    def __init__(self, directory: pathlib.Path, **limits: int) -> None:
        self.directory = directory
        self.snapshots: list[Snapshot] = []
        self.refused: list[str] = []
        self.source = DirectorySource(
            os.fspath(directory),
            self.snapshots.append,
            _InlineReactor(),
            use_inotify=False,
            limits=ConfigLimits(**limits),
            on_refused=self.refused.append,
        )

    def write(self, name: str, *services: str, padding: int = 0) -> None:
        documents = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service}}
            for service in services
        ]
        text = yaml.safe_dump_all(documents) + "#" * padding + "\n"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_text(text)
        os.rename(temporary, self.directory / name)

    def reload(self) -> Snapshot:
        self.source.reload()
        return self.snapshots[-1]

    def served(self) -> set[str]:
        return {resource.name for resource in self.snapshots[-1].of_kind("Service")}

    def errors(self) -> list[ConfigError]:
        return list(self.snapshots[-1].errors)


def test_too_many_files_refuse_the_directory_and_keep_the_last_good(tmp_path):
    watched = Watched(tmp_path, max_files=3)
    watched.write("a.yaml", "a")
    watched.write("b.yaml", "b")
    (tmp_path / ".hidden.yaml").write_text("{}\n")  # none of these count
    (tmp_path / "notes.txt").write_text("x\n")
    (tmp_path / "sub.yaml").mkdir()
    watched.reload()
    assert watched.served() == {"a", "b"} and not watched.errors()

    watched.write("a.yaml", "a2")
    watched.write("c.yaml", "c")
    watched.write("d.yaml", "d")
    watched.reload()
    assert watched.served() == {"a", "b"}
    assert watched.errors() == [
        ConfigError(
            os.fspath(tmp_path),
            f"refused: more than 3 manifest files (--config-max-files); {KEPT}",
        )
    ]
    assert watched.refused == ["files"]

    handed = len(watched.snapshots)
    watched.source.reload()  # the same state: nothing new to report or count
    assert len(watched.snapshots) == handed and watched.refused == ["files"]

    os.remove(tmp_path / "d.yaml")
    watched.reload()
    assert watched.served() == {"a2", "b", "c"} and not watched.errors()
    assert watched.refused == ["files"]


def test_total_bytes_refuse_the_directory_before_any_file_is_read(tmp_path):
    watched = Watched(tmp_path, max_file_bytes=1000, max_total_bytes=1500)
    watched.write("a.yaml", "a", padding=600)
    watched.write("b.yaml", "b", padding=600)
    watched.write("huge.yaml", "huge", padding=5000)  # refused by itself, not counted
    watched.reload()
    assert watched.served() == {"a", "b"}
    (huge,) = watched.errors()
    assert huge.source.endswith("huge.yaml") and "--config-max-file-bytes" in huge.message
    assert watched.refused == ["file_bytes"]

    watched.write("c.yaml", "c", padding=600)
    scan = scan_directory(os.fspath(tmp_path), {}, ConfigLimits(1000, 10, 1500, 100))
    assert scan.files == {} and scan.refusal.limit == "total_bytes"
    watched.reload()
    assert watched.served() == {"a", "b"}
    assert watched.errors()[0] == huge  # the last good state's errors stay reported
    refusal = watched.errors()[1]
    assert refusal.source == os.fspath(tmp_path)
    total = sum(os.path.getsize(tmp_path / name) for name in ("a.yaml", "b.yaml", "c.yaml"))
    assert refusal.message == (
        f"refused: the manifest files total {total:,} bytes, more than 1,500 "
        f"(--config-max-total-bytes); {KEPT}"
    )
    assert watched.refused == ["file_bytes", "total_bytes"]

    watched.write("c.yaml", "c")  # smaller: within the limit again
    watched.reload()
    assert watched.served() == {"a", "b", "c"}
    assert [error.source for error in watched.errors()] == [huge.source]


def test_too_many_objects_refuse_the_directory_and_later_changes_apply(tmp_path):
    watched = Watched(tmp_path, max_objects=3)
    watched.write("a.yaml", "a1", "a2")
    watched.write("b.yaml", "b1")
    watched.reload()
    assert watched.served() == {"a1", "a2", "b1"}

    watched.write("b.yaml", "b1", "b2")
    watched.reload()
    assert watched.served() == {"a1", "a2", "b1"}
    assert watched.errors() == [
        ConfigError(
            os.fspath(tmp_path),
            "refused: the manifest files hold 4 objects, more than 3 (--config-max-objects); "
            + KEPT,
        )
    ]
    handed = len(watched.snapshots)
    watched.source.reload()
    assert len(watched.snapshots) == handed and watched.refused == ["objects"]

    watched.write("b.yaml", "b3")
    watched.reload()
    assert watched.served() == {"a1", "a2", "b3"} and not watched.errors()


def test_a_directory_over_a_limit_at_start_serves_nothing_and_says_why(tmp_path):
    watched = Watched(tmp_path, max_files=1)
    watched.write("a.yaml", "a")
    watched.write("b.yaml", "b")
    snapshot = watched.reload()
    assert not snapshot.objects
    (error,) = snapshot.errors
    assert error.message.endswith("; nothing is served until it is within the limit")
    os.remove(tmp_path / "b.yaml")
    watched.reload()
    assert watched.served() == {"a"} and not watched.errors()


def test_each_limit_gone_over_is_counted_once(tmp_path):
    watched = Watched(tmp_path, max_files=2, max_objects=2)
    watched.write("a.yaml", "a1", "a2")
    watched.write("b.yaml", "b")
    watched.reload()
    assert watched.refused == ["objects"]
    watched.write("c.yaml", "c")
    watched.reload()
    os.remove(tmp_path / "c.yaml")
    watched.reload()  # back to the objects refusal: a limit gone over again
    assert watched.refused == ["objects", "files", "objects"]
    assert "--config-max-objects" in watched.errors()[-1].message


@pytest.mark.parametrize("padding", [300, 400])
def test_a_refused_file_is_counted_once_per_version(tmp_path, padding):
    watched = Watched(tmp_path, max_file_bytes=200)
    watched.write("big.yaml", "big", padding=padding)
    watched.reload()
    watched.reload()
    assert watched.refused == ["file_bytes"]
    watched.write("big.yaml", "big", padding=padding + 1)
    watched.reload()
    assert watched.refused == ["file_bytes", "file_bytes"]
    watched.write("big.yaml", "big")
    watched.reload()
    assert watched.served() == {"big"} and not watched.errors()
