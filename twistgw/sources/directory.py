"""Host mode's config source: a directory of Kubernetes manifests, watched for changes."""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from twistgw.snapshot import ConfigError, Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.sources.limits import ConfigLimits, Refusal, objects_refusal
from twistgw.sources.manifests import UNREAD, DirectoryScan, ParsedFile, scan_directory

log = Logger()

#: How long to wait after a change event before reading, to batch bursts of events.
SETTLE_SECONDS = 0.05


def _inotify_class():
    try:
        from twisted.internet import inotify
    except ImportError:
        return None
    return inotify


class DirectorySource(Service):
    """Reads every ``*.yaml``/``*.yml``/``*.json`` in a directory into a Snapshot.

    Changes are noticed through inotify where the platform has it, by polling
    otherwise. Files are read and parsed in a thread, within ``limits``. A file that
    fails to parse or exceeds a limit is reported, the documents it held before stay in
    force, and it is not read again until it changes. A directory over a limit across
    files (files, total bytes, objects) is refused as a whole: the last snapshot within
    the limits stays in force, reported with the refusal, until the directory is within
    them again. ``on_refused`` is called with the limit's name once for each version of
    a file refused, and once each time the directory goes over a limit.
    """

    def __init__(
        self,
        path: str,
        on_snapshot: Callable[[Snapshot], object],
        reactor: IReactorTime,
        poll_interval: float = 0.5,
        use_inotify: bool = True,
        limits: ConfigLimits | None = None,
        on_refused: Callable[[str], object] = lambda limit: None,
    ) -> None:
        self.path = path
        self._on_snapshot = on_snapshot
        self._reactor = reactor
        self._poll_interval = poll_interval
        self._use_inotify = use_inotify
        self._limits = limits or ConfigLimits()
        self._on_refused = on_refused
        self._assembler = ObjectAssembler(GenerationTracker(reactor.seconds))
        #: the files as last read, whether or not the directory was then within limits
        self._files: dict[str, ParsedFile] = {}
        #: the last snapshot of the directory within its limits
        self._good: Snapshot | None = None
        #: why the directory is refused now
        self._refusal: Refusal | None = None
        self._loading = False
        self._again = False
        self._scheduled = None
        self._notifier = None
        self._poller: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        inotify = _inotify_class() if self._use_inotify else None
        if inotify is not None:
            try:
                self._notifier = inotify.INotify(reactor=self._reactor)
                self._notifier.startReading()
                mask = (
                    inotify.IN_CREATE
                    | inotify.IN_DELETE
                    | inotify.IN_MOVED_TO
                    | inotify.IN_MOVED_FROM
                    | inotify.IN_CLOSE_WRITE
                    | inotify.IN_MODIFY
                    | inotify.IN_ATTRIB
                )
                self._notifier.watch(
                    FilePath(self.path), mask=mask, callbacks=[lambda *_: self.schedule_reload()]
                )
            except Exception as exc:  # no inotify, watch limit reached, missing directory
                log.warn(
                    "inotify unavailable for {path} ({error}); polling instead",
                    path=self.path,
                    error=exc,
                )
                self._stop_notifier()
        if self._notifier is None:
            self._poller = LoopingCall(self.reload)
            self._poller.clock = self._reactor
            self._poller.start(self._poll_interval, now=False)
        self.reload()

    def stopService(self) -> None:
        super().stopService()
        self._stop_notifier()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()

    def _stop_notifier(self) -> None:
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None

    def schedule_reload(self) -> None:
        """Read the directory again shortly (events arrive in bursts)."""
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = self._reactor.callLater(SETTLE_SECONDS, self.reload)

    def reload(self) -> None:
        """Read the directory again now (one read at a time; a request during a read
        makes another read follow it)."""
        if self._loading:
            self._again = True
            return
        self._loading = True
        known = {
            name: parsed.signature
            for name, parsed in self._files.items()
            if parsed.signature != UNREAD
        }
        d = threads.deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            scan_directory,
            self.path,
            known,
            self._limits,
        )
        d.addCallbacks(self._scanned, self._scan_failed)
        d.addBoth(self._done)

    def _done(self, _: object) -> None:
        self._loading = False
        if self._again:
            self._again = False
            self.reload()

    def _scan_failed(self, failure: Failure) -> None:
        log.error("reading {path} failed: {error}", path=self.path, error=failure.getErrorMessage())

    def _scanned(self, scan: DirectoryScan) -> None:
        if scan.refusal is not None:
            self._refuse(scan.refusal)  # nothing was read
            return
        files, changed = self._merged(scan.files)
        self._files = files
        counts = (len(parsed.documents) for parsed in files.values())
        refusal = objects_refusal(counts, self._limits)
        if refusal is not None:
            self._refuse(refusal)
            return
        if not changed and self._good is not None and self._refusal is None:
            return
        self._refusal = None
        errors = [
            ConfigError(os.path.join(self.path, name), parsed.error)
            for name, parsed in files.items()
            if parsed.error is not None
        ]
        documents = {
            os.path.join(self.path, name): parsed.documents for name, parsed in files.items()
        }
        self._good = self._assembler.assemble(documents, errors)
        self._on_snapshot(self._good)

    def _merged(self, found: dict[str, ParsedFile]) -> tuple[dict[str, ParsedFile], bool]:
        """The files as now found, those unchanged as they were, and whether any
        changed. Each file newly refused for a limit is counted."""
        changed = set(found) != set(self._files)
        files: dict[str, ParsedFile] = {}
        for name, parsed in found.items():
            previous = self._files.get(name)
            if (
                previous is not None
                and previous.signature == parsed.signature
                and not parsed.documents
                and parsed.error is None
            ):
                files[name] = previous  # unchanged, not read again
                continue
            if parsed.limit is not None:
                self._on_refused(parsed.limit)
            if parsed.error is not None:
                # the documents it held before stay in force
                files[name] = _kept_with_error(previous, parsed) if previous else parsed
                changed = changed or previous is None or previous.error != parsed.error
            else:
                files[name] = parsed
                changed = True
        return files, changed

    def _refuse(self, refusal: Refusal) -> None:
        """Keep the last good snapshot in force, reported with ``refusal``."""
        if refusal == self._refusal:
            return  # reported already
        if self._refusal is None or self._refusal.limit != refusal.limit:
            self._on_refused(refusal.limit)
        self._refusal = refusal
        good = self._good
        if good is None:
            consequence = "nothing is served until it is within the limit"
        else:
            consequence = "the last configuration within the limits stays in force"
        error = ConfigError(self.path, f"{refusal.message}; {consequence}")
        log.warn("config directory {path}: {message}", path=self.path, message=error.message)
        objects = {} if good is None else good.objects
        self._on_snapshot(Snapshot(objects, (*(good.errors if good else ()), error)))


def _kept_with_error(previous: ParsedFile, failed: ParsedFile) -> ParsedFile:
    """The previous documents with the new file's signature and error: what a broken
    rewrite leaves in force (and is not read again until it changes)."""
    return ParsedFile(failed.signature, previous.documents, failed.error, failed.limit)
