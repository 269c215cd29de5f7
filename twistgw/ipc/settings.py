"""The operator's data-plane settings, handed from the supervisor to every worker."""

from __future__ import annotations

import json

import attrs


@attrs.frozen
class DataPlaneSettings:
    """``tls_min_version``: oldest TLS version terminating listeners accept;
    ``stream_idle_timeout``: seconds a TCP or TLS stream may pass no bytes either way
    before both sides are closed; ``udp_session_timeout``: seconds a UDP session lives
    without a datagram; ``udp_max_sessions``: UDP sessions per listener and worker (the
    least recently active one is ended to make room)."""

    tls_min_version: str = "1.2"
    stream_idle_timeout: float = 3600.0
    udp_session_timeout: float = 60.0
    udp_max_sessions: int = 10000

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DataPlaneSettings:
        return cls(**json.loads(text))


DEFAULT_SETTINGS = DataPlaneSettings()
