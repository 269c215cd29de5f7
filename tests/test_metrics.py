"""Requests counted in a worker and added to the metrics in batches give the same
series as counting each request at once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from twistgw.metrics import BUCKET_BOUNDS, Metrics, add_observations

DURATIONS = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 1.5, 9.0, 42.0]


def _samples(registry: CollectorRegistry) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): round(sample.value, 9)
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_batched_requests_match_counting_each() -> None:
    direct, batched = Metrics(), Metrics()
    for index, seconds in enumerate(DURATIONS):
        code = 200 if index % 3 else 503
        protocol, grpc = ("HTTP/2", b"14") if index % 2 else ("HTTP/1.1", None)
        grpc_label = grpc.decode() if grpc else ""
        rule = "api" if index % 5 else "0"
        labels = ("ns/gw", "ns/r", rule, "ns/b:80", str(code), protocol, grpc_label)
        direct.requests.labels(*labels).inc()
        direct.latency.labels("ns/gw", "ns/r").observe(seconds)
        batched.request("ns/gw", "ns/r", rule, "ns/b:80", code, seconds, protocol, grpc)
    assert _samples(batched.registry) != _samples(direct.registry)  # nothing before a flush
    batched.flush()
    assert _samples(batched.registry) == _samples(direct.registry)
    batched.flush()  # a flush with nothing new adds nothing
    assert _samples(batched.registry) == _samples(direct.registry)


class _PublicOnly:
    """A histogram child seen through its public interface only."""

    def __init__(self, child) -> None:
        self.observe = child.observe


def test_without_the_expected_internals_observations_are_replayed() -> None:
    direct, replayed = Metrics(), Metrics()
    tally = [0.0] * (2 * len(BUCKET_BOUNDS))
    for seconds in DURATIONS:
        direct.latency.labels("g", "r").observe(seconds)
        bucket = next(i for i, bound in enumerate(BUCKET_BOUNDS) if seconds <= bound)
        tally[bucket] += 1
        tally[bucket + len(BUCKET_BOUNDS)] += seconds
    add_observations(_PublicOnly(replayed.latency.labels("g", "r")), tally)
    assert _samples(replayed.registry) == _samples(direct.registry)
