"""dataplane/fastwrite.py: the shortcut on real TCP transports, the fallback elsewhere."""

import pytest

from tests.support.checks import run_check


@pytest.mark.parametrize("mode", ["batched", "at-once"])
def test_direct_writes_keep_order_under_backpressure_and_close_and_fall_back_elsewhere(mode):
    assert run_check("fastwrite_check.py", mode) == {
        "tcp_shortcut": True,
        "batched": mode == "batched",
        "in_order": True,
        "fallback_is_plain_write": True,
        "unknown_transport_counts_as_pending": True,
        "tls_transport_falls_back": True,
        "batch_sent_before_close": "one two three",
        "timer_write_sent": "from a timer",
        "bad_write_and_good_one": ["", "the other answer"],
    }
