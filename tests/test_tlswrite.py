"""dataplane/tlswrite.py: a TLS layer gathering its writes per reactor turn, against
real TLS connections."""

import pytest

from tests.support.checks import run_check


@pytest.mark.parametrize("mode", ["batched", "at-once"])
def test_tls_writes_arrive_whole_and_in_order_before_the_close(mode):
    assert run_check("tlswrite_check.py", mode) == {
        "batched": [mode == "batched"] * 3,
        "pieces": "one two three four five",
        "kept_alive": "pong, later",
        "flood_in_order": True,
    }


def test_waiting_for_a_tls_client_to_read_looks_now_and_then_and_does_not_spin():
    """A pipelined request waits for the answers before it to be sent. Over TLS the
    connection looks every DRAIN_LOOK_INTERVAL (50 looks for the 1 s the client reads
    nothing, on any machine: far fewer than a look per reactor turn, which was 700,000
    here)."""
    looks = run_check("drain_check.py")["looks_until_drained"]
    assert looks is not None, "never drained"
    assert looks < 1000
