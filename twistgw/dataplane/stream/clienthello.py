"""The server name (SNI) of a TLS ClientHello, read without terminating TLS."""

from __future__ import annotations

HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME = 0x0000
HOST_NAME = 0x00
#: A ClientHello larger than this is refused (real ones are a few hundred bytes).
MAX_HELLO = 64 * 1024


class NotTLS(ValueError):
    """The bytes are not the start of a TLS handshake."""


def _handshake_bytes(data: bytes) -> bytes | None:
    """The handshake message bytes so far, gathered from consecutive records; None
    until the ClientHello is complete."""
    gathered = b""
    position = 0
    while True:
        if len(data) < position + 5:
            return None
        if data[position] != HANDSHAKE:
            raise NotTLS("not a TLS handshake record")
        length = int.from_bytes(data[position + 3 : position + 5], "big")
        if len(data) < position + 5 + length:
            return None
        gathered += data[position + 5 : position + 5 + length]
        position += 5 + length
        if len(gathered) >= 4:
            if gathered[0] != CLIENT_HELLO:
                raise NotTLS("the first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(gathered[1:4], "big")
            if needed > MAX_HELLO:
                raise NotTLS("ClientHello too large")
            if len(gathered) >= needed:
                return gathered[4:needed]


def server_name(data: bytes) -> tuple[bool, str | None]:
    """(complete, SNI): whether the ClientHello has fully arrived, and the host name it
    asks for (None without the extension). Raises NotTLS for anything else."""
    body = _handshake_bytes(data)
    if body is None:
        if len(data) > MAX_HELLO:
            raise NotTLS("ClientHello too large")
        return False, None
    try:
        position = 2 + 32  # version, random
        position += 1 + body[position]  # session id
        position += 2 + int.from_bytes(body[position : position + 2], "big")  # cipher suites
        position += 1 + body[position]  # compression methods
        if position + 2 > len(body):
            return True, None  # no extensions
        end = position + 2 + int.from_bytes(body[position : position + 2], "big")
        position += 2
        while position + 4 <= end:
            kind = int.from_bytes(body[position : position + 2], "big")
            length = int.from_bytes(body[position + 2 : position + 4], "big")
            position += 4
            if kind == SERVER_NAME:
                names = body[position : position + length]
                index = 2
                while index + 3 <= len(names):
                    name_type = names[index]
                    name_length = int.from_bytes(names[index + 1 : index + 3], "big")
                    if name_type == HOST_NAME:
                        return True, names[index + 3 : index + 3 + name_length].decode(
                            "ascii"
                        ).lower()
                    index += 3 + name_length
                return True, None
            position += length
    except (IndexError, UnicodeDecodeError) as exc:
        raise NotTLS("malformed ClientHello") from exc
    return True, None
