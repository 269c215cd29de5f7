"""dataplane/reactor.py: the workers' reactor, against real sockets."""

import json
import os
import subprocess
import sys

CHECK = os.path.join(os.path.dirname(__file__), "support", "reactor_check.py")


def test_fast_reactor_serves_and_survives_a_raising_protocol():
    output = subprocess.run([sys.executable, CHECK], capture_output=True, text=True, timeout=60)
    assert output.returncode == 0, output.stderr
    result = json.loads(output.stdout.strip().splitlines()[-1])
    assert result == {
        "reactor": "FastEPollReactor",
        "echoed": 300000,
        "broken": "",
        "after": "still serving",
    }
