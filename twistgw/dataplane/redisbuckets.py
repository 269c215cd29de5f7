"""Rate-limit buckets in Redis, so that every replica of a gateway (not only its
workers, as ``ratelimit.SharedBuckets``) counts against one limit.

A bucket is the same GCRA state as in ``SharedBuckets`` (a theoretical arrival time,
clamped to what ``burst`` allows when the clock stepped back), read and written
atomically by one Lua script (``EVALSHA``, ``EVAL`` when Redis has not cached it).
The times are the caller's (the gateway's clock), stored as text that reads back to
the same float. A bucket's Redis key is a prefix and the hex blake2b digest (16 bytes)
of its key, so client-controlled values never make Redis keys; it expires a second
after its window (``burst * interval``), when it would be full anyway.

When Redis does not answer in time, or at all, ``take`` fires with ``None`` (and
counts it in ``failures``): whether to allow the request is the caller's choice."""

from __future__ import annotations

import math
from hashlib import blake2b, sha1

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.dataplane.ratelimit import Decision, decide
from twistgw.dataplane.redisclient import RedisClient, Reply, ReplyError

log = Logger()

#: KEYS[1]: the bucket; ARGV: now, interval, burst, expiry (ms). Returns the bucket's
#: time before this request, clamped; ``decide`` makes the answer from it the same way.
SCRIPT = b"""
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3]) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local stored = nil
if tat > now + window then
  tat = now + window
  stored = tat
end
if now >= tat + interval - window then stored = tat + interval end
if stored then
  redis.call('SET', KEYS[1], string.format('%.17g', stored), 'PX', ARGV[4])
end
return string.format('%.17g', tat)
"""
SCRIPT_SHA = sha1(SCRIPT).hexdigest().encode()
#: How long a bucket outlives its window in Redis (ms), for clocks slightly apart.
EXPIRY_MARGIN_MS = 1000


class RedisBuckets:
    """GCRA buckets in the Redis server of ``client``, under keys starting ``prefix``."""

    def __init__(self, client: RedisClient, prefix: bytes = b"twistgw:rl:") -> None:
        self.client = client
        self.prefix = prefix
        #: Takes answered ``None`` (Redis unreachable, too slow or failing).
        self.failures = 0
        self._complaint = ""

    def take(
        self, key: bytes, interval: float, burst: int, now: float
    ) -> Deferred[Decision | None]:
        """Count one request for ``key`` in a bucket of ``burst`` that refills one
        request every ``interval`` seconds; fires with ``None`` if Redis cannot say."""
        name = self.prefix + blake2b(key, digest_size=16).hexdigest().encode()
        expiry = math.ceil(burst * interval * 1000) + EXPIRY_MARGIN_MS
        args = (name, repr(float(now)).encode(), repr(float(interval)).encode())
        args += (b"%d" % burst, b"%d" % expiry)
        answer = self.client.execute(b"EVALSHA", SCRIPT_SHA, b"1", *args)
        answer.addErrback(self._unless_uncached, args)
        return answer.addCallbacks(
            self._decision, self._failed, callbackArgs=(now, interval, burst)
        )

    def _unless_uncached(
        self, failure: Failure, args: tuple[bytes, ...]
    ) -> Deferred[Reply] | Failure:
        error = failure.check(ReplyError) and failure.value
        if error and error.message.startswith("NOSCRIPT"):
            return self.client.execute(b"EVAL", SCRIPT, b"1", *args)  # (which caches it)
        return failure

    def _decision(self, reply: Reply, now: float, interval: float, burst: int) -> Decision | None:
        try:
            tat = float(reply)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            tat = math.nan
        if not math.isfinite(tat):
            self._complain(f"the rate-limit script answered {reply!r:.100}")
            return None
        return decide(tat, now, interval, burst)

    def _failed(self, failure: Failure) -> None:
        if failure.check(ReplyError):
            self._complain(f"Redis refused a rate-limit take: {failure.value}")
        else:
            self.failures += 1

    def _complain(self, text: str) -> None:
        """Count a failure that is not Redis being away, and log it unless it is
        the one logged last (a failing server would fill the log)."""
        self.failures += 1
        if text != self._complaint:
            self._complaint = text
            log.warn("{text}", text=text)
