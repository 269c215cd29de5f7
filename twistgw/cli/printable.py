"""Text from manifests and gateways made safe for a terminal: control characters (a
file name or a condition message may hold escape sequences that retitle or clear the
operator's terminal) shown as escapes instead of acted on."""

from __future__ import annotations

_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """``text`` with every C0 and C1 control character (tab included) as ``\\xNN``."""
    return text.translate(_CONTROLS)
