"""dataplane/fastwrite.py: the shortcut on real TCP transports, the fallback elsewhere."""

from tests.support.checks import run_check


def test_immediate_writes_keep_order_under_backpressure_and_fall_back_elsewhere():
    assert run_check("fastwrite_check.py") == {
        "tcp_shortcut": True,
        "in_order": True,
        "fallback_is_plain_write": True,
        "unknown_transport_counts_as_pending": True,
        "tls_transport_falls_back": True,
    }
