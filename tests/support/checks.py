"""Checks that need a reactor of their own run as scripts in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_check(script: str, *args: str) -> dict:
    """Run ``tests/support/SCRIPT`` with ``args`` and return the JSON its last output
    line holds."""
    path = os.path.join(os.path.dirname(__file__), script)
    output = subprocess.run(
        [sys.executable, path, *args], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    return json.loads(output.stdout.strip().splitlines()[-1])
