"""Which process holds which TCP connection (Linux /proc), for tests that need to know
the worker behind a client connection."""

from __future__ import annotations

import os
import socket
import struct


def _tcp_inodes() -> dict[tuple[str, int, str, int], str]:
    """{(local ip, local port, remote ip, remote port): socket inode} for IPv4 TCP."""
    found = {}
    with open("/proc/net/tcp") as handle:
        for row in handle.read().splitlines()[1:]:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            (lip, lport), (rip, rport) = (_endpoint(local), _endpoint(remote))
            found[(lip, lport, rip, rport)] = inode
    return found


def _endpoint(text: str) -> tuple[str, int]:
    address, port = text.split(":")
    return socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)


def _inodes_of(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connection_owner(client: socket.socket, pids: list[int]) -> int | None:
    """The pid among ``pids`` holding the server side of a client's connection."""
    cip, cport = client.getsockname()[:2]
    sip, sport = client.getpeername()[:2]
    inode = _tcp_inodes().get((sip, sport, cip, cport))
    for pid in pids:
        if inode is not None and inode in _inodes_of(pid):
            return pid
    return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False
