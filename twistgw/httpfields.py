"""Header fields HTTP framing owns, which both the codecs and the configuration checks
know: the connection fields, framing, Host and Expect."""

from __future__ import annotations

#: Lower-case names. The codecs set them apart from the end-to-end fields; no
#: configuration may set them on a request.
CONNECTION_FIELDS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
    }
)
