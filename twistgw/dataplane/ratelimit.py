"""Rate-limit buckets that every worker of one gateway shares, so a limit is exact
however many workers take the requests (not N times the limit).

The buckets live in one shared memory file the supervisor makes and each worker
inherits, as a set-associative table: a key's hash picks a set of ``WAYS`` slots, and
the set is locked (a POSIX byte-range lock on the file) while a worker reads and
writes it. A slot holds the key's 64-bit hash and its GCRA state, the "theoretical
arrival time" of the next request; a bucket that has refilled (that time has passed)
is as good as empty, so its slot is reused. When a set has no such slot, the one
closest to refilled gives way: a flood of new keys can make others' buckets forget,
never make them stricter.

Times are the reactor's (``time.time``), the same in every worker; a bucket's state
is clamped to what ``burst`` allows, so a clock stepping back cannot lock a key out
for longer than a full bucket's refill."""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
from hashlib import blake2b
from typing import NamedTuple

SLOT = struct.Struct("<Qd")  # key hash (0: never used), theoretical arrival time
WAYS = 8
#: A whole set of slots, read at once.
SET = struct.Struct("<" + "Qd" * WAYS)
#: Slots in the table by default: 131,072 keys in 2 MiB.
DEFAULT_SLOTS = 1 << 17


class Decision(NamedTuple):
    """What a bucket said: ``allowed``, requests ``remaining`` after this one,
    seconds until it is full again (``reset``) and, when refused, until a request
    would be allowed (``retry_after``). (A tuple: made on every request, cheaply.)"""

    allowed: bool
    remaining: int
    reset: float
    retry_after: float = 0.0


def shared_file(slots: int = DEFAULT_SLOTS) -> int:
    """A new shared memory file sized for ``slots`` (its descriptor, inheritable)."""
    fd = os.memfd_create("twistgw-rate-limits", 0)
    os.ftruncate(fd, slots * SLOT.size)
    return fd


class SharedBuckets:
    """GCRA buckets in the table of ``fd`` (a ``shared_file``); without one, in this
    process's memory (a single process, nothing to share)."""

    def __init__(self, fd: int | None = None, slots: int = DEFAULT_SLOTS) -> None:
        if slots < WAYS or slots % WAYS:
            raise ValueError(f"slots must be a multiple of {WAYS}")
        self.fd = fd
        self.memory = mmap.mmap(-1 if fd is None else fd, slots * SLOT.size)
        self.sets = slots // WAYS

    def take(self, key: bytes, interval: float, burst: int, now: float) -> Decision:
        """Count one request for ``key`` in a bucket of ``burst`` that refills one
        request every ``interval`` seconds."""
        digest = int.from_bytes(blake2b(key, digest_size=8).digest(), "little") or 1
        start = (digest % self.sets) * WAYS * SLOT.size
        length = WAYS * SLOT.size
        fd = self.fd
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX, length, start)
        try:
            return self._take(digest, start, interval, burst, now)
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, length, start)

    def _take(self, digest: int, start: int, interval: float, burst: int, now: float) -> Decision:
        memory = self.memory
        slots = SET.unpack_from(memory, start)
        chosen = -1
        arrival = now
        oldest = math.inf
        for index in range(0, 2 * WAYS, 2):
            tat = slots[index + 1]
            if slots[index] == digest:
                chosen, arrival = start + index * 8, tat
                break
            if tat < oldest:  # (a never used slot has 0.0: it goes first)
                chosen, oldest = start + index * 8, tat
        window = burst * interval
        tat = max(arrival, now)
        if tat > now + window:  # (only if the clock stepped back: an empty bucket now)
            tat = now + window
            SLOT.pack_into(memory, chosen, digest, tat)
        decision = decide(tat, now, interval, burst)
        if decision.allowed:
            SLOT.pack_into(memory, chosen, digest, tat + interval)
        return decision


def decide(tat: float, now: float, interval: float, burst: int) -> Decision:
    """What a bucket answers to one request at ``now`` when its theoretical arrival
    time is ``tat`` (already clamped between ``now`` and ``now`` plus the window); if
    allowed, its new time is ``tat + interval``."""
    due = tat + interval
    allowed_at = due - burst * interval
    if now < allowed_at:
        return Decision(False, 0, tat - now, allowed_at - now)
    return Decision(True, int((now - allowed_at) / interval + 1e-9), due - now)
