"""Filter plugins for tests: one that fails, one that waits, one that answers itself,
one that rewrites response bodies after a wait (found by Twisted's plugin system when
tests/support/filterplugins is on the path)."""

from twisted.internet import reactor, task
from zope.interface import implementer

from twistgw.extensions.filters import Answer, IFilterPlugin


class _Raises:
    def on_request(self, request):
        raise RuntimeError("this plugin always fails")


class _Waits:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_request(self, request):
        request.headers.set("X-Waited", str(self.seconds))
        return task.deferLater(reactor, self.seconds, lambda: None)


class _Answers:
    def on_request(self, request):
        if request.headers.get("X-Let-Me") == "in":
            return None
        return Answer(418, b"no tea here\n", [("X-Answered-By", "plugin")])


@implementer(IFilterPlugin)
class _Plugin:
    def __init__(self, name: str, make, schema: dict) -> None:
        self.name = name
        self.description = f"test plugin {name}"
        self.config_schema = schema
        self._make = make

    def make(self, config):
        return self._make(config)


raises = _Plugin("test-raises", lambda config: _Raises(), {"type": "object"})
waits = _Plugin(
    "test-waits",
    lambda config: _Waits(config["seconds"]),
    {"type": "object", "required": ["seconds"], "properties": {"seconds": {"type": "number"}}},
)
answers = _Plugin("test-answers", lambda config: _Answers(), {"type": "object"})


class _Odd:
    """Returns what is neither None nor an Answer, and tries to set a framing field."""

    def on_request(self, request):
        if request.headers.get("X-Frame-It"):
            request.headers.add("Transfer-Encoding", "chunked")
        return False


class _Nothing:
    def on_request(self, request):
        return None


noop = _Plugin("test-noop", lambda config: _Nothing(), {"type": "object"})
odd = _Plugin("test-odd", lambda config: _Odd(), {"type": "object"})


class _Rewrites:
    """Marks the attempt in a request field; after a short wait, lower-cases the
    response body and ends it with a line of its own."""

    def on_request(self, request):
        request.headers.add("X-Attempt-Filter", "1")

    def on_response(self, request, response):
        response.headers.set("X-Rewritten", "yes")
        return task.deferLater(reactor, 0.05, _Lower)


class _Lower:
    def data(self, chunk: bytes) -> bytes:
        return chunk.lower()

    def end(self) -> bytes:
        return b"\n-- rewritten\n"


rewrites = _Plugin("test-rewrites", lambda config: _Rewrites(), {"type": "object"})
