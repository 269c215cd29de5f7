"""HTTPRoute rules and backendRefs for the translator fuzzing's core, from valid but
unusual values: the plain one first, so failures shrink towards it."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.translate.fuzz_values import (
    HEADER_NAMES,
    HEADER_VALUES,
    HOSTNAMES,
    METHODS,
    PATHS,
    QUERY_VALUES,
    REFUSED_REGEXES,
    REGEXES,
    UNSENDABLE_HEADER_VALUES,
    UNSENDABLE_PATHS,
    fields,
    mostly,
    optional,
    pick,
)

#: backendRefs: resolvable ones first, then a missing port, a missing Service, and
#: one in another namespace (granted from "default" only).
BACKENDS = (
    {"name": "web", "port": 80},
    {"name": "api", "namespace": "other", "port": 80},
    {"name": "web", "port": 8080},
    {"name": "web", "namespace": "default", "port": 80},
    {"name": "web", "port": 81},
    {"name": "nope", "port": 80},
)
WEIGHTS = (None, 0, 1000000, 3)
PRECISE_HOSTNAMES = tuple(h for h in HOSTNAMES if not h.startswith("*"))

header = fields(name=pick(HEADER_NAMES), value=mostly(HEADER_VALUES, UNSENDABLE_HEADER_VALUES))
header_modifier = fields(
    set=optional(st.lists(header, max_size=2)),
    add=optional(st.lists(header, max_size=2)),
    remove=optional(st.lists(pick(HEADER_NAMES), max_size=2)),
)
path_modifier = st.one_of(
    fields(type=st.just("ReplaceFullPath"), replaceFullPath=mostly(PATHS, UNSENDABLE_PATHS)),
    fields(type=st.just("ReplacePrefixMatch"), replacePrefixMatch=mostly(PATHS, UNSENDABLE_PATHS)),
)
header_filter = st.one_of(
    fields(type=st.just("RequestHeaderModifier"), requestHeaderModifier=header_modifier),
    fields(type=st.just("ResponseHeaderModifier"), responseHeaderModifier=header_modifier),
)
#: Filters; the unsupported types are one in six.
http_filter = st.one_of(
    header_filter,
    header_filter,
    fields(
        type=st.just("RequestRedirect"),
        requestRedirect=fields(
            scheme=optional(pick(("https", "http"))),
            hostname=optional(pick(PRECISE_HOSTNAMES)),
            port=optional(pick((443, 8443, 1, 65535))),
            statusCode=optional(pick((301, 302, 303, 307, 308))),
            path=optional(path_modifier),
        ),
    ),
    fields(
        type=st.just("URLRewrite"),
        urlRewrite=fields(hostname=optional(pick(PRECISE_HOSTNAMES)), path=optional(path_modifier)),
    ),
    fields(type=pick(("RequestMirror", "ExtensionRef", "CORS"))),
)


@st.composite
def backend_ref(draw: st.DrawFn, with_filters: bool = True) -> dict[str, Any]:
    """A backendRef from ``BACKENDS`` with a drawn weight (and filters, for HTTP)."""
    ref = dict(draw(pick(BACKENDS)))
    weight = draw(pick(WEIGHTS))
    if weight is not None:
        ref["weight"] = weight
    if with_filters:
        filters = draw(optional(st.lists(header_filter, max_size=2)))
        if filters is not None:
            ref["filters"] = filters
    return ref


path_match = st.one_of(
    fields(type=pick(("PathPrefix", "Exact")), value=pick(PATHS + UNSENDABLE_PATHS)),
    fields(type=st.just("RegularExpression"), value=mostly(REGEXES, REFUSED_REGEXES)),
)
header_match = fields(
    type=optional(pick(("Exact", "RegularExpression"))),
    name=pick(HEADER_NAMES),
    value=mostly(HEADER_VALUES + REGEXES, UNSENDABLE_HEADER_VALUES + REFUSED_REGEXES),
)
query_match = fields(
    type=optional(pick(("Exact", "RegularExpression"))),
    name=pick(("q", "Q", "a b", "€", "")),
    value=mostly(QUERY_VALUES + REGEXES, REFUSED_REGEXES),
)
http_match = fields(
    path=optional(path_match),
    headers=optional(st.lists(header_match, max_size=2)),
    queryParams=optional(st.lists(query_match, max_size=2)),
    method=optional(pick(METHODS)),
)
#: Up to the schema's 64 matches in a rule, as copies of one.
many_matches = st.builds(
    lambda match, count: [copy.deepcopy(match) for _ in range(count)],
    http_match,
    st.integers(4, 64),
)
http_rule = fields(
    matches=optional(st.one_of(st.lists(http_match, max_size=2), many_matches)),
    filters=optional(st.lists(http_filter, max_size=2)),
    backendRefs=optional(st.lists(backend_ref(), max_size=2)),
)
route_hostnames = optional(st.lists(pick(HOSTNAMES), max_size=3))
