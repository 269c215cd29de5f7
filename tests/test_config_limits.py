"""Manifest files are read within limits: size, documents, nodes and text after alias
expansion, nesting. A file past one is refused with the limit it broke. The config
directory is read within limits across its files: their number, their total size and
the objects they hold; past one the whole directory is refused and the last good
configuration stays in force."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from twistgw.sources.limits import ConfigLimits, LimitExceeded
from twistgw.sources.manifests import (
    MAX_DEPTH,
    MAX_DOCUMENTS,
    MAX_FILE_BYTES,
    MAX_NODES,
    parse_documents,
    scan_directory,
)


def yaml_bomb(levels: int = 9, width: int = 9) -> str:
    """A Service whose spec nests ``levels`` anchors of ``width`` aliases to the one
    before: a few hundred bytes that expand to width ** levels strings."""
    lines = ["apiVersion: v1", "kind: Service", "metadata: {name: bomb}", "spec:"]
    lines.append("  a0: &a0 [" + ",".join(["lol"] * width) + "]")
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_bomb_is_refused_with_the_node_limit():
    bomb = yaml_bomb()
    assert len(bomb) < 500
    with pytest.raises(LimitExceeded, match=f"more than {MAX_NODES:,} nodes .* at line 11") as info:
        parse_documents(bomb, "bomb.yaml")
    assert info.value.limit == "nodes"


def test_merge_key_bomb_is_refused_before_constructing():
    lines = ["l0: &l0 {a: 1}"]
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} {{<<: [" + ", ".join([f"*l{level - 1}"] * 9) + "]}")
    with pytest.raises(ValueError, match="nodes"):
        parse_documents("\n".join(lines), "merge.yaml")


def test_documents_with_a_few_aliases_still_load():
    text = """
apiVersion: v1
kind: Service
metadata: {name: one, labels: &labels {app: web, tier: front}}
spec:
  selector: *labels
  ports: [&http {name: http, port: 80}, {<<: *http, name: alt, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: two, labels: &labels {app: api}}
spec: {selector: *labels}
---
"""
    one, two = parse_documents(text, "services.yaml")
    assert one["spec"]["selector"] == one["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert one["spec"]["ports"][1] == {"name": "alt", "port": 8080}
    assert two["spec"]["selector"] == {"app": "api"}


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "x: &x 1\n---\ny: &x {z: *x}\n"],
    ids=["self", "reused-name"],
)
def test_an_alias_inside_its_own_anchor_is_refused(text):
    with pytest.raises(ValueError, match="inside its own anchor"):
        parse_documents(text, "loop.yaml")


def test_aliased_text_counts_as_copies():
    text = "a: &s " + "x" * 100_000 + "\nb: [" + ", ".join(["*s"] * 50) + "]\n"
    with pytest.raises(ValueError, match="characters of text"):
        parse_documents(text, "text.yaml")


def nested(depth: int) -> str:
    """A document of ``depth`` mappings, one inside the other (JSON, and so YAML)."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize("name", ["deep.yaml", "deep.json"])
def test_nesting_is_bounded(name):
    assert parse_documents(nested(MAX_DEPTH), name)
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_documents(nested(MAX_DEPTH + 1), name)


@pytest.mark.parametrize("name", ["deep.yaml", "deep.json"])
def test_very_deep_nesting_is_refused_by_the_parser(name):
    with pytest.raises(ValueError, match="deeper than|nesting depth"):
        parse_documents("[" * 100_000 + "]" * 100_000, name)


def test_too_many_nodes_without_aliases_are_refused_in_json_too():
    with pytest.raises(ValueError, match=f"more than {MAX_NODES:,} nodes"):
        parse_documents(json.dumps([0] * MAX_NODES), "many.json")


@pytest.mark.parametrize(
    "text",
    [
        "---\n" * (MAX_DOCUMENTS + 1),
        yaml.safe_dump({"kind": "List", "items": [{}] * (MAX_DOCUMENTS + 1)}),
    ],
    ids=["stream", "list"],
)
def test_too_many_documents_are_refused(text):
    with pytest.raises(ValueError, match=f"more than {MAX_DOCUMENTS:,} documents"):
        parse_documents(text, "many.yaml")


def test_oversized_file_is_refused_by_the_scan(tmp_path):
    with open(tmp_path / "huge.yaml", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    (tmp_path / "fits.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    scan = scan_directory(os.fspath(tmp_path), {})
    assert scan.refusal is None
    huge = scan.files["huge.yaml"]
    assert huge.error == "refused: larger than 4,194,304 bytes (--config-max-file-bytes)"
    assert huge.limit == "file_bytes"
    assert scan.files["fits.yaml"].documents[0]["metadata"] == {"name": "s"}


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        (yaml_bomb(), "nodes"),
        ("a: &a [*a]\n", "nodes"),
        ("a: &s " + "x" * 100_000 + "\nb: [" + ", ".join(["*s"] * 50) + "]\n", "text"),
        (nested(MAX_DEPTH + 1), "depth"),
        ("---\n" * (MAX_DOCUMENTS + 1), "documents"),
    ],
    ids=["bomb", "recursive", "text", "depth", "documents"],
)
def test_a_refused_file_names_the_limit_it_broke(tmp_path, text, limit):
    (tmp_path / "bad.yaml").write_text(text)
    refused = scan_directory(os.fspath(tmp_path), {}).files["bad.yaml"]
    assert refused.limit == limit and refused.error.startswith("refused: ")


def test_a_file_that_does_not_parse_broke_no_limit(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    broken = scan_directory(os.fspath(tmp_path), {}).files["bad.yaml"]
    assert broken.error and broken.limit is None


def test_the_file_size_limit_bounds_text_too():
    limits = ConfigLimits(max_file_bytes=1000)
    text = "a: &s " + "x" * 100 + "\nb: [" + ", ".join(["*s"] * 10) + "]\n"
    assert parse_documents(text, "ok.yaml")
    with pytest.raises(LimitExceeded, match="more than 1,000 characters of text"):
        parse_documents(text, "small.yaml", limits)
