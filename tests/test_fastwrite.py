"""dataplane/fastwrite.py: the shortcut on real TCP transports, the fallback elsewhere."""

import json
import os
import subprocess
import sys

CHECK = os.path.join(os.path.dirname(__file__), "support", "fastwrite_check.py")


def test_immediate_writes_keep_order_under_backpressure_and_fall_back_elsewhere():
    output = subprocess.run([sys.executable, CHECK], capture_output=True, text=True, timeout=60)
    assert output.returncode == 0, output.stderr
    result = json.loads(output.stdout.strip().splitlines()[-1])
    assert result == {
        "tcp_shortcut": True,
        "in_order": True,
        "fallback_is_plain_write": True,
        "unknown_transport_counts_as_pending": True,
        "tls_transport_falls_back": True,
    }
