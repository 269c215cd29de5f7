"""kubectl for the tests that render deploy/ with ``kubectl kustomize``."""

from __future__ import annotations

import os
import shutil

import pytest

#: Set (to 1) where kubectl must be there: a missing kubectl fails instead of skipping
#: (.ci/run sets it).
REQUIRE_ENV = "TWISTGW_REQUIRE_KUBECTL"


def kubectl_or_skip() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"kubectl is not installed and {REQUIRE_ENV} is set")
        pytest.skip("kubectl is not installed (Debian/apt package kubectl)")
    return kubectl
