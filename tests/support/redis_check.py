"""Run by tests/test_redis_buckets.py in its own process (it needs a running reactor):
``redis_check.py SCENARIO ARGS...`` takes from RedisBuckets against a real Redis server
and prints what happened as JSON."""

import json
import random
import sys
import tempfile
import time

from twisted.internet import defer, protocol, reactor, task

from tests.support.redisserver import RedisServer
from twistgw.dataplane.ratelimit import SharedBuckets
from twistgw.dataplane.redisbuckets import RedisBuckets
from twistgw.dataplane.redisclient import RedisClient

SCENARIOS = {}


def scenario(function):
    SCENARIOS[function.__name__] = defer.inlineCallbacks(function)
    return function


def as_list(decision):
    return None if decision is None else list(decision)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def connected(*clients, within=15.0):
    """Wait until every client is connected (False if one is not ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not all(client.connected for client in clients):
        if time.monotonic() > deadline:
            return False
        yield sleep(0.02)
    return True


@defer.inlineCallbacks
def started(url, **options):
    client = RedisClient(url, reactor, **options)
    client.start()
    assert (yield connected(client)), "not connected"
    return client, RedisBuckets(client)


@scenario
def basics(url):
    client, buckets = yield started(url, timeout=5.0)
    taken = []
    for now in (100.0, 100.0, 100.0, 100.0, 105.0, 110.0, 110.0):
        taken.append(as_list((yield buckets.take(b"k", 10.0, 3, now))))
    other = as_list((yield buckets.take(b"other", 10.0, 3, 110.0)))
    keys = yield client.execute(b"KEYS", b"twistgw:rl:*")
    ttl = yield client.execute(b"PTTL", keys[0])
    yield client.execute(b"SCRIPT", b"FLUSH")
    after_flush = as_list((yield buckets.take(b"k", 10.0, 3, 200.0)))
    client.stop()
    return {
        "taken": taken,
        "other": other,
        "keys": sorted(key.decode() for key in keys),
        "ttl": ttl,
        "after_flush": after_flush,
        "failures": buckets.failures,
    }


@scenario
def compare(url):
    """The same random takes (keys, bucket sizes, times that sometimes step back) from
    RedisBuckets and SharedBuckets."""
    client, buckets = yield started(url, timeout=5.0)
    local = SharedBuckets()
    draw = random.Random(7)
    sizes = {b"a": (1.0, 1), b"b": (5.0, 4), b"c": (0.25, 10), b"d": (1 / 3, 3)}
    now = 10_000.0
    pairs = []
    for _ in range(400):
        key = draw.choice(sorted(sizes))
        interval, burst = sizes[key]
        now += draw.choice((0.0, 0.0, 0.05, 0.1, 0.3, 1.0, 2.5, -3.0))
        remote = yield buckets.take(key, interval, burst, now)
        pairs.append([as_list(remote), as_list(local.take(key, interval, burst, now))])
    client.stop()
    return {"pairs": pairs, "failures": buckets.failures}


@scenario
def shared(url):
    """Two clients (two connections, as two replicas) taking from one bucket at once."""
    first, one = yield started(url, timeout=5.0)
    second, two = yield started(url, timeout=5.0)
    takes = []
    for _ in range(60):
        for buckets in (one, two):
            takes.append(buckets.take(b"shared", 3600.0, 50, 1000.0))
    decisions = yield defer.gatherResults(takes)
    first.stop()
    second.stop()
    return {
        "allowed": sum(decision.allowed for decision in decisions),
        "remaining": sorted(decision.remaining for decision in decisions if decision.allowed),
        "failures": one.failures + two.failures,
    }


@scenario
def restart():
    """Redis killed, then started again on the same port."""
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory).start()
        client, buckets = yield started(server.url, timeout=2.0)
        before = as_list((yield buckets.take(b"k", 10.0, 5, 100.0)))
        server.stop()
        start = time.monotonic()
        while_down = yield buckets.take(b"k", 10.0, 5, 100.0)
        took = time.monotonic() - start
        down_for_a_while = yield buckets.take(b"k", 10.0, 5, 100.0)
        server.start()
        back = yield connected(client, within=30.0)
        after = as_list((yield buckets.take(b"k", 10.0, 5, 100.0)))
        client.stop()
        server.stop()
    return {
        "before": before,
        "while_down": while_down,
        "down_for_a_while": down_for_a_while,
        "took": took,
        "reconnected": back,
        "after": after,
        "failures": buckets.failures,
    }


@scenario
def login(url, password):
    """With the password, without it and with a wrong one."""
    host = url.split("://", 1)[1]
    results = {}
    for name, secret in (("right", password), ("none", None), ("wrong", "not-" + password)):
        client = RedisClient(
            url if secret is None else f"redis://:{secret}@{host}", reactor, timeout=5.0
        )
        client.start()
        yield connected(client, within=1.0 if name == "wrong" else 15.0)
        buckets = RedisBuckets(client)
        decision = yield buckets.take(b"k", 10.0, 5, 100.0)
        results[name] = {
            "connected": client.connected,
            "decision": as_list(decision),
            "failures": buckets.failures,
        }
        client.stop()
    return results


class Silent(protocol.Protocol):
    def dataReceived(self, data):
        self.factory.received += len(data)


@scenario
def silent():
    """A server that accepts and reads, and never answers."""
    factory = protocol.Factory.forProtocol(Silent)
    factory.received = 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client, buckets = yield started(f"redis://127.0.0.1:{port.getHost().port}", timeout=0.25)
    start = time.monotonic()
    first = yield buckets.take(b"k", 10.0, 5, 100.0)
    took = time.monotonic() - start
    more = yield defer.gatherResults([buckets.take(b"k", 10.0, 5, 100.0) for _ in range(5)])
    client.stop()
    yield port.stopListening()
    return {
        "first": first,
        "more": more,
        "took": took,
        "received": factory.received,
        "failures": buckets.failures,
    }


@scenario
def tls(url, ca_file):
    with open(ca_file, "rb") as handle:
        ca_pem = handle.read()
    client, buckets = yield started(url.replace("127.0.0.1", "localhost"), ca_pem=ca_pem)
    decision = yield buckets.take(b"k", 10.0, 5, 100.0)
    client.stop()
    return {"decision": as_list(decision)}


@defer.inlineCallbacks
def main(_, name, *args):
    result = yield SCENARIOS[name](*args)
    print(json.dumps(result))


task.react(main, sys.argv[1:])
