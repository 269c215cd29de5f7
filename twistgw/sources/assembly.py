"""From manifest documents to a Snapshot, keeping the last good version of each object.

Assembly is incremental: documents are known by a digest of their content, and only a
document not seen in the previous assembly is validated and stamped; every other one
keeps the Resource (or the rejection) it had.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterable, Mapping

import attrs
from twisted.logger import Logger

from twistgw.api.resource import CLUSTER_SCOPED, KNOWN_KINDS, ObjectKey, Resource
from twistgw.api.validation import InvalidObject, validated_body
from twistgw.snapshot import ConfigError, Snapshot
from twistgw.sources.generations import GenerationTracker

log = Logger()


def object_key(document: dict) -> ObjectKey:
    """The identity of a manifest document (namespaced kinds default to "default")."""
    kind = document.get("kind")
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    name = metadata.get("name")
    namespace = "" if kind in CLUSTER_SCOPED else (metadata.get("namespace") or "default")
    return ObjectKey(str(kind), str(namespace), str(name))


def fingerprint(document: dict) -> bytes | None:
    """A digest of the document's exact content (types included: ``1`` and ``true``
    differ), or None when it cannot be serialised (then it is never taken as unchanged).

    Equal digests mean equal content; equal content may still digest differently
    (another key order, other shared sub-objects), which only costs a validation."""
    try:
        data = pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None
    return hashlib.blake2b(data, digest_size=32).digest()


@attrs.frozen
class Checked:
    """The outcome of validating one version of an object: its Resource, or why not."""

    key: ObjectKey
    resource: Resource | None
    problem: str | None


@attrs.define
class Gathered:
    """What one assembly collects as it goes through the documents."""

    problems: list[ConfigError]
    objects: dict[ObjectKey, Resource] = attrs.Factory(dict)
    checked: dict[bytes, Checked] = attrs.Factory(dict)  # by fingerprint
    origin: dict[ObjectKey, str] = attrs.Factory(dict)
    duplicated: set[ObjectKey] = attrs.Factory(set)

    def first_definition(self, key: ObjectKey, source: str) -> bool:
        """Note that ``source`` defines ``key``; False, and a problem, if a document
        before it did too."""
        count = len(self.origin)
        first = self.origin.setdefault(key, source)
        if len(self.origin) > count:
            return True
        message = f"{key} is also defined in {first}; this one is used"
        self.problems.append(ConfigError(source, message))
        self.origin[key] = source
        self.duplicated.add(key)
        return False

    def reusable(self) -> dict[bytes, Checked]:
        """The outcomes a later assembly may take as they are: not those of objects
        defined more than once, whose generations move with each version."""
        if not self.duplicated:
            return self.checked
        return {digest: c for digest, c in self.checked.items() if c.key not in self.duplicated}


class ObjectAssembler:
    """Turns the documents of named sources (files) into Snapshots.

    An object that fails validation is reported and its last good version stays in
    force, as the API server would keep the stored object when it rejects an update.
    Kinds twistgw does not read (Deployment, ...) are skipped silently. Documents are
    only read, never changed; ``validations`` counts the documents validated so far.
    """

    def __init__(self, tracker: GenerationTracker) -> None:
        self._tracker = tracker
        self._last_good: dict[ObjectKey, Resource] = {}
        self._checked: dict[bytes, Checked] = {}  # by fingerprint, from the last assembly
        self.validations = 0

    def assemble(
        self, documents: Mapping[str, Iterable[dict]], errors: Iterable[ConfigError] = ()
    ) -> Snapshot:
        found = Gathered(list(errors))
        for source in sorted(documents):
            for document in documents[source]:
                self._take(found, source, document)
        self._tracker.retain(found.objects.keys())
        self._last_good = found.objects
        self._checked = found.reusable()
        for problem in found.problems:
            log.warn(
                "config error in {source}: {message}",
                source=problem.source,
                message=problem.message,
            )
        return Snapshot(found.objects, tuple(found.problems))

    def _take(self, found: Gathered, source: str, document: dict) -> None:
        """Add one document's object (or its last good version, or nothing) to ``found``;
        validated only if neither this assembly nor the last one saw the same content."""
        kind = document.get("kind")
        if not isinstance(kind, str) or not document.get("apiVersion"):
            found.problems.append(ConfigError(source, "a document lacks apiVersion or kind"))
            return
        group = _group_of(document["apiVersion"])
        if KNOWN_KINDS.get(kind) != group:
            if kind in KNOWN_KINDS and _near_miss(group):  # (a typo: a policy unread)
                found.problems.append(
                    ConfigError(
                        source,
                        f"{kind} of API group {group!r} is not read: twistgw reads {kind} "
                        f"from {KNOWN_KINDS[kind] or 'the core group'!r}",
                    )
                )
            return
        digest = fingerprint(document)
        outcome = None
        if digest is not None:
            outcome = found.checked.get(digest) or self._checked.get(digest)
        key = object_key(document) if outcome is None else outcome.key
        if not found.first_definition(key, source):
            outcome = None  # each version of the object is stamped in turn, as it comes
        if outcome is None:
            outcome = self._validate(key, document)
        if digest is not None:
            found.checked[digest] = outcome
        if outcome.problem is None:
            found.objects[key] = outcome.resource
            return
        kept = self._last_good.get(key)
        suffix = "; the previous version stays in force" if kept else ""
        found.problems.append(ConfigError(source, f"{key} is invalid: {outcome.problem}{suffix}"))
        if kept is not None:
            found.objects[key] = kept

    def _validate(self, key: ObjectKey, document: dict) -> Checked:
        self.validations += 1
        try:
            body = validated_body(document)
        except InvalidObject as exc:
            return Checked(key, None, str(exc))
        return Checked(key, self._resource(key, body), None)

    def _resource(self, key: ObjectKey, body: dict) -> Resource:
        metadata = body.setdefault("metadata", {})
        if key.namespace:
            metadata["namespace"] = key.namespace
        generation, created = self._tracker.stamp(key, body)
        metadata["generation"] = generation
        metadata["creationTimestamp"] = created
        return Resource(
            key=key,
            api_version=str(body.get("apiVersion")),
            generation=generation,
            creation_timestamp=created,
            uid=str(metadata.get("uid") or ""),
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
            body=body,
        )


def _group_of(api_version: object) -> str | None:
    """The API group of an ``apiVersion`` ("" for the core group's "v1")."""
    if not isinstance(api_version, str):
        return None
    group, _, _ = api_version.rpartition("/")
    return group


def _near_miss(group: str | None) -> bool:
    """Whether ``group`` looks like one of twistgw's own or the Gateway API's, written
    wrong (another project's kind of the same name is none of twistgw's business)."""
    return group is not None and ("twistgw" in group or group.startswith("gateway.networking"))
