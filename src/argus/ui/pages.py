"""Rendering: the Jinja2 environment, one `render()` for every page, the error page.

Also the YAML spec editor that serving and tasks share (`spec_editor`, `posted_spec`),
and the small pure helpers the templates lean on: time formatting, where a spec
field sits in the YAML text (to put its error next to it), whether a page should
keep refreshing, the copy-ready client examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from starlette.responses import HTMLResponse

from argus import __version__
from argus.errors import ArgusError, PayloadTooLarge
from argus.store.states import ServeState
from argus.ui.session import UiSession, clear_flash, read_flash

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
REFRESH_MS = 2000
MAX_SHOWN_ERRORS = 25  # the API reports at most 10 field errors and a count of the rest
MAX_ANNOTATED_LINES = 80  # a longer spec shows only the lines around its errors

# Everything the pages need is served from /ui/static: no inline script, no CDN.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """Answer with the error page (403, 404, 409 ...) instead of the one asked for."""

    def __init__(
        self, status: int, title: str, message: str, session: UiSession | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.session = session


def format_time(value: str | datetime | None) -> str:
    """'2026-11-28 12:03:10 UTC' from an ISO string or a datetime; '' for None."""
    if value is None or value == "":
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_time
    env.globals["version"] = __version__
    return env


ENV = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    session: UiSession | None,
    status: int = 200,
    refresh: bool = False,
) -> HTMLResponse:
    """A page with the layout's context (who, the csrf value, a flash note) and safe headers."""
    flash = read_flash(request)
    body = ENV.get_template(template).render(
        {
            "session": session,
            "csrf": session.csrf if session else "",
            "flash": flash,
            "refresh_ms": REFRESH_MS if refresh else 0,
            "section": "",
            "replace_url": "",
            "path": request.url.path,
            **context,
        }
    )
    # A lone surrogate a spec smuggled in comes out escaped, never as an encoding error.
    content = body.encode("utf-8", "backslashreplace")
    response = HTMLResponse(content, status_code=status, headers=SECURITY_HEADERS)
    if flash is not None:
        clear_flash(response)
    return response


def error_page(request: Request, exc: PageError) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": exc.title, "message": exc.message, "status": exc.status},
        session=exc.session,
        status=exc.status,
    )


# -- the spec editor -------------------------------------------------------------
def posted_spec(form: Mapping[str, str], max_bytes: int) -> tuple[str, ArgusError | None]:
    """The spec text of an editor's form, and the error to show if it is too large.

    A spec over the limit is not echoed back (the page would be as large as it); the
    browser's Back button still has the text.
    """
    # Browsers send a textarea with CRLF line ends; store what the user saw.
    text = form.get("spec", "").replace("\r\n", "\n")
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return "", PayloadTooLarge(
            f"the spec is larger than {max_bytes // 1024} KiB; it was not kept here"
        )
    return text, None


def spec_editor(
    request: Request,
    session: UiSession,
    template: str,
    text: str,
    *,
    error: ArgusError | None = None,
    **context: Any,
) -> HTMLResponse:
    """An editor page holding `text`; after a refusal, each field error under its line.

    The status is the refusal's (422, 403, 400, 413, 409), so the page answers as the
    API would to the same spec.
    """
    details = error.details if error is not None and isinstance(error.details, list) else []
    lines, unplaced = annotate_spec(text, [d for d in details if isinstance(d, dict)])
    body = {
        "spec": text,
        "error": error.message if error is not None else None,
        "lines": lines if error is not None else [],
        "unplaced": unplaced,
        **context,
    }
    status = error.status if error is not None else 200
    return render(request, template, body, session=session, status=status)


# -- helpers the templates use ------------------------------------------------
def needs_refresh(model: Mapping[str, Any]) -> bool:
    """Something will change without the user: a transition, or replicas catching up."""
    state = ServeState(model["state"])
    if not state.is_settled:
        return True
    if state is ServeState.RUNNING:
        if model.get("autoscaling"):  # Serve moves it within its range at any time
            return True
        return bool(
            model["ready_replicas"] != model["target_replicas"]
            or model["generation"] != model["observed_generation"]
        )
    return False


def any_needs_refresh(models: Iterable[Mapping[str, Any]]) -> bool:
    return any(needs_refresh(m) for m in models)


_KEY_RE = re.compile(r"^(\s*)([A-Za-z0-9_.-]+)\s*:")


def key_lines(text: str) -> list[tuple[int, int, str]]:
    """(line, indentation, key) of each line that starts a `key:`, in order."""
    found = []
    for i, line in enumerate(text.split("\n")):
        m = _KEY_RE.match(line)
        if m is not None:
            found.append((i, len(m.group(1)), m.group(2)))
    return found


def locate_field(
    text: str, field: str, keys: list[tuple[int, int, str]] | None = None
) -> int | None:
    """The 0-based line where a dotted field's key is written in YAML text, if found.

    Only a display aid for putting an error next to its line: a simple scan for
    `key:` at increasing indentation, never a second parser or a second validator.
    `keys` is `key_lines(text)`, computed once for several fields.
    """
    keys = key_lines(text) if keys is None else keys
    start, indent = 0, -1
    found: int | None = None
    for part in field.split("."):
        found = None
        for j in range(start, len(keys)):
            line, width, key = keys[j]
            if width <= indent:
                break  # left the parent mapping
            if key == part and (indent >= 0 or width == 0):
                found, start, indent = line, j + 1, width
                break
        if found is None:
            return None
    return found


def annotate_spec(
    text: str, details: Iterable[Mapping[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The spec's lines, each with the errors of the field written there; and the rest."""
    shown = text.split("\n")
    if len(shown) > 1 and shown[-1] == "":
        shown.pop()  # the line break that ends the last line opens no new one
    lines: list[dict[str, Any]] = [
        {"number": i + 1, "text": line, "errors": []} for i, line in enumerate(shown)
    ]
    unplaced: list[dict[str, str]] = []
    keys = key_lines(text)
    for d in list(details)[:MAX_SHOWN_ERRORS]:
        where = locate_field(text, d["field"], keys)
        err = {"field": d["field"], "message": d["message"]}
        if where is None:
            unplaced.append(err)
        else:
            lines[where]["errors"].append(err)
    if len(lines) > MAX_ANNOTATED_LINES:
        lines = _around_errors(lines)
    return lines, unplaced


def _around_errors(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines with errors and one on each side; a gap marker for what is left out."""
    keep = sorted(
        {j for i, line in enumerate(lines) if line["errors"] for j in (i - 1, i, i + 1)}
        & set(range(len(lines)))
    )
    out: list[dict[str, Any]] = []
    previous = -1
    for i in keep:
        if i != previous + 1:
            out.append({"number": None, "text": "…", "errors": []})
        out.append(lines[i])
        previous = i
    return out


def form_errors(error: ArgusError | None) -> tuple[str | None, dict[str, str]]:
    """A form's refusal as the page shows it: each field's message under its input, or,
    when no field is named, one message at the top."""
    details = error.details if error is not None and isinstance(error.details, list) else []
    fields = {d["field"]: d["message"] for d in details if isinstance(d, dict)}
    return (error.message if error is not None and not fields else None), fields


def client_examples(base_url: str, model_id: str) -> dict[str, str]:
    body = json.dumps(
        {"model": model_id, "messages": [{"role": "user", "content": "Hello! Who are you?"}]}
    )
    curl = (
        f"curl {base_url}/chat/completions \\\n"
        '  -H "Authorization: Bearer $ARGUS_KEY" \\\n'
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )
    python = (
        "import os\n\nfrom openai import OpenAI\n\n"
        "# ARGUS_KEY: your argus token, or a key from the Keys page (`argus key create`)\n"
        f'client = OpenAI(base_url="{base_url}", api_key=os.environ["ARGUS_KEY"])\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model_id}",\n'
        '    messages=[{"role": "user", "content": "Hello! Who are you?"}],\n'
        ")\n"
        "print(reply.choices[0].message.content)\n"
    )
    return {"curl": curl, "python": python}


def resources(values: Mapping[str, Any], key: str) -> str:
    """A resource amount for a table cell: '16', '0.5'; a resource Ray does not list is 0."""
    number = float(values.get(key) or 0)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def compact(value: Any) -> str:
    """An event payload value for a timeline line: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


ENV.filters["resource"] = resources
ENV.filters["compact"] = compact
