"""From manifest documents to a Snapshot, keeping the last good version of each object."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


class ObjectAssembler:
    """Turns the documents of named sources (files) into Snapshots.

    An object that fails validation is reported and its last good version stays in
    force, as the API server would keep the stored object when it rejects an update.
    Kinds twistgw does not read (Deployment, ...) are skipped silently.
    """

    def __init__(self, tracker: GenerationTracker) -> None:
        self._tracker = tracker
        self._last_good: dict[ObjectKey, Resource] = {}

    def assemble(
        self, documents: Mapping[str, Iterable[dict]], errors: Iterable[ConfigError] = ()
    ) -> Snapshot:
        problems = list(errors)
        objects: dict[ObjectKey, Resource] = {}
        origin: dict[ObjectKey, str] = {}
        for source in sorted(documents):
            for document in documents[source]:
                kind = document.get("kind")
                if not isinstance(kind, str) or not document.get("apiVersion"):
                    problems.append(ConfigError(source, "a document lacks apiVersion or kind"))
                    continue
                if kind not in KNOWN_KINDS:
                    continue
                key = object_key(document)
                if key in origin:
                    problems.append(
                        ConfigError(
                            source, f"{key} is also defined in {origin[key]}; this one is used"
                        )
                    )
                origin[key] = source
                resource = self._resource(key, document, source, problems)
                if resource is not None:
                    objects[key] = resource
        self._tracker.retain(set(objects))
        self._last_good = dict(objects)
        for problem in problems:
            log.warn(
                "config error in {source}: {message}",
                source=problem.source,
                message=problem.message,
            )
        return Snapshot(objects, tuple(problems))

    def _resource(
        self, key: ObjectKey, document: dict, source: str, problems: list[ConfigError]
    ) -> Resource | None:
        try:
            body = validated_body(document)
        except InvalidObject as exc:
            kept = self._last_good.get(key)
            suffix = "; the previous version stays in force" if kept else ""
            problems.append(ConfigError(source, f"{key} is invalid: {exc}{suffix}"))
            return kept
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
