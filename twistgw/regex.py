"""Regular expressions from routes, compiled with RE2 so matching is linear-time.

Route authors are not trusted with a backtracking engine: a pattern such as
``(a+)+$`` would let one request hold a worker. RE2 (the engine Envoy uses) has no
backreferences or lookaround and refuses them when compiling; google-re2 raises
rather than falling back to Python's ``re``. The translator reports what RE2
refuses, and the data plane compiles only what the translator accepted.
"""

from __future__ import annotations

import re2

#: RE2's memory budget per pattern. It bounds the compiled program, and with it the
#: compile time, which grows about quadratically with the program's size: with RE2's
#: default (8 MiB) one 900-character pattern took 20 s to compile, in the translator
#: and again in every worker; at 64 KiB the largest programs accepted (about 4,000
#: instructions) compile in about 10 ms, and larger ones are refused as fast.
MAX_REGEX_MEMORY = 64 * 1024


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message is RE2's."""


def compile_regex(pattern: str) -> re2._Regexp:
    """``pattern`` compiled by RE2 (UTF-8, case-sensitive); raises RegexError."""
    options = re2.Options()
    options.log_errors = False  # refusals are reported, not written to stderr
    options.max_mem = MAX_REGEX_MEMORY
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "cannot be compiled"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(reason) from None
    except UnicodeEncodeError:
        raise RegexError("contains a lone surrogate, which is not Unicode text") from None
