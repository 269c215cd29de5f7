"""dataplane/reactor.py: the workers' reactor, against real sockets."""

from tests.support.checks import run_check


def test_fast_reactor_serves_and_survives_a_raising_protocol():
    assert run_check("reactor_check.py") == {
        "reactor": "FastEPollReactor",
        "echoed": 300000,
        "broken": "",
        "after": "still serving",
        "after_half_close": "got all of it",
        "ended": ["done", "lost"],
    }
