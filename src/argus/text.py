"""Text that argus shows back to a user: values quoted in errors, failure summaries.

Every message that quotes what a user sent goes through `shown()`, so a hostile value
(a 60 KiB string, a 5,000-digit number, a deeply nested list, a lone surrogate) comes
back as a short, printable excerpt and never makes an answer large or fail to encode.
"""

from __future__ import annotations

import re
import reprlib

SHOWN_LIMIT = 80
_DIGITS_PER_BIT = 0.30103  # log10(2)
ERROR_SUMMARY_LIMIT = 1000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b[^:]*:")
_PYDANTIC_TAIL = re.compile(r"\s*\[type=.*$")
_PYDANTIC_HEAD = re.compile(r"^\d+ validation errors? for \w+")


def _repr_settings() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxstring = SHOWN_LIMIT
    r.maxother = SHOWN_LIMIT
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    return r


_REPR = _repr_settings()


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """`value` as an error message may quote it: a repr of at most `limit` characters.

    Huge integers are described, not printed (Python refuses to print one of more than
    4,300 digits); lone surrogates come out escaped, as `repr` writes them.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a number of about {int(value.bit_length() * _DIGITS_PER_BIT)} digits"
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """`text` with anything that cannot be written as UTF-8 (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def summarize_error(message: str) -> str:
    """A readable line from a (often traceback-long) failure message from Ray or a task.

    The last exception line is the reason; a pydantic-style error continues on the lines
    below it, which are kept (without the `[type=...]` noise).
    """
    plain = _ANSI.sub("", message)
    lines = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    if not lines:
        return "the deployment failed without a message; see the Ray Serve logs"
    error_at = [
        i for i, ln in enumerate(lines) if _ERROR_LINE.match(ln) or _PYDANTIC_HEAD.match(ln)
    ]
    at = error_at[-1] if error_at else len(lines) - 1
    core = [lines[at]]
    for ln in lines[at + 1 : at + 3]:
        if ln.startswith(("File ", "Traceback", "For further information")):
            break
        core.append(_PYDANTIC_TAIL.sub("", ln))
    text = ": ".join(core)
    head = lines[0]
    if at != 0 and len(head) <= 200:
        text = f"{head} ... {text}"
    return text[:ERROR_SUMMARY_LIMIT]
