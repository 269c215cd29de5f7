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
