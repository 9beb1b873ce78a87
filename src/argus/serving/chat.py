"""Chats with a served model through its OpenAI endpoint: the model page's playground.

It goes to Serve's HTTP proxy on :8000 as any client's would, with the user's own
token, not through Ray: what answers is what a user's own client gets, checked by the
same gate (access, rate limits) and metered to that user.

The answer streams: `open_stream` sends the request and reads the status before the
first byte goes back to the page (so a refusal keeps its own HTTP status), then
`Stream.events` turns the server-sent events into small dicts: `{"delta": text}` for
each piece, then one `{"done": ..., "usage": ..., "finish_reason": ...}`, or
`{"error": reason}` when the stream broke off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from argus.errors import BadGateway, GatewayTimeout, TooManyRequests

TIMEOUT_S = 60.0  # to connect and, between two pieces of a stream, to wait for the next
MAX_CHARS = 4000  # the message, and the system prompt, each
MAX_TOKENS = 1024
DEFAULT_MAX_TOKENS = 128
MAX_TEMPERATURE = 2.0  # OpenAI's own bound
# 0, not the model's own default: the demo model at its defaults (temperature 0.2) once
# answered "What is the capital of France?" with a loop of "la femme" in 1 of 4 tries.
DEFAULT_TEMPERATURE = 0.0


@dataclass(frozen=True)
class Settings:
    """What the playground sends besides the message; shown with every answer."""

    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    system: str = ""


def chat_url(http_host: str, http_port: int) -> str:
    """The chat endpoint as argus itself reaches it (a wildcard bind means loopback)."""
    host = http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a bind address, not a bind
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http_port}/v1/chat/completions"


def request_body(model_id: str, message: str, settings: Settings) -> dict[str, Any]:
    messages = [{"role": "user", "content": message}]
    if settings.system:
        messages.insert(0, {"role": "system", "content": settings.system})
    return {
        "model": model_id,
        "messages": messages,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _refusal(reply: httpx.Response) -> str:
    """The OpenAI error's message when the endpoint gave one, else the start of the body."""
    try:
        message = reply.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return reply.text[:300]
    return str(message)[:300]


class Stream:
    """An answer that has started: iterate `events()` once; it closes the connection."""

    def __init__(
        self, client: httpx.Client, reply: httpx.Response, model_id: str, settings: Settings
    ) -> None:
        self._client = client
        self._reply = reply
        self.model_id = model_id
        self.settings = settings

    def close(self) -> None:
        self._reply.close()
        self._client.close()

    def events(self) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        usage: dict[str, Any] | None = None
        finish: str | None = None
        try:
            yield {"model": self.model_id, "settings": asdict(self.settings)}
            for line in self._reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    yield {"error": f"the model stopped: {_message_of(chunk)}"}
                    return
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield {"delta": text}
            yield {
                "done": True,
                "usage": usage,
                "finish_reason": finish,
                "seconds": round(time.monotonic() - started, 2),
            }
        except httpx.TimeoutException:
            yield {"error": f"the model sent nothing for {TIMEOUT_S:g} s"}
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as e:
            yield {"error": f"the answer broke off: {e or type(e).__name__}"}
        finally:
            self.close()


def _message_of(chunk: dict[str, Any]) -> str:
    error = chunk.get("error")
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def open_stream(url: str, key: str, model_id: str, message: str, settings: Settings) -> Stream:
    """The answer, once the endpoint accepted the request; ArgusError when it did not.

    A refusal from the endpoint keeps its status where it is the caller's to fix (a rate
    limit's 429, with its reason); anything else the endpoint did is a 502.
    """
    # trust_env off: the endpoint is local, never to be sent through a proxy.
    client = httpx.Client(timeout=TIMEOUT_S, trust_env=False)
    try:
        request = client.build_request(
            "POST",
            url,
            json=request_body(model_id, message, settings),
            headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
        )
        reply = client.send(request, stream=True)
    except httpx.TimeoutException:
        client.close()
        raise GatewayTimeout(f"the model did not answer within {TIMEOUT_S:g} s") from None
    except httpx.HTTPError as e:
        client.close()
        raise BadGateway(f"could not reach the model: {e}") from None
    if reply.status_code != 200:
        reply.read()
        reason = _refusal(reply)
        status = reply.status_code
        reply.close()
        client.close()
        if status == 429:
            raise TooManyRequests(f"the model refused: {reason}")
        raise BadGateway(f"the model answered HTTP {status}: {reason}")
    return Stream(client, reply, model_id, settings)
