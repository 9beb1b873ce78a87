"""One chat message to a served model through its OpenAI endpoint (the pages' "try it").

It goes to Serve's HTTP proxy on :8000 as any client's would, not through Ray: what
answers is what a user's own client gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from argus.errors import BadGateway, GatewayTimeout

TIMEOUT_S = 60.0
MAX_TOKENS = 128


@dataclass(frozen=True)
class Answer:
    model_id: str
    text: str


def chat_url(http_host: str, http_port: int) -> str:
    """The chat endpoint as argus itself reaches it (a wildcard bind means loopback)."""
    host = http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a bind address, not a bind
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http_port}/v1/chat/completions"


def ask(url: str, key: str, model_id: str, message: str, timeout_s: float = TIMEOUT_S) -> Answer:
    """The model's reply; BadGateway or GatewayTimeout when it does not give one."""
    request = {
        "model": model_id,
        "messages": [{"role": "user", "content": message}],
        "max_tokens": MAX_TOKENS,
    }
    try:
        # trust_env off: the endpoint is local, never to be sent through a proxy.
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            reply = client.post(url, json=request, headers={"Authorization": f"Bearer {key}"})
    except httpx.TimeoutException:
        raise GatewayTimeout(f"the model did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise BadGateway(f"could not reach the model: {e}") from None
    if reply.status_code != 200:
        raise BadGateway(f"the model answered HTTP {reply.status_code}: {reply.text[:300]}")
    try:
        text = reply.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BadGateway("the reply was not an OpenAI chat completion") from None
    return Answer(model_id, str(text or ""))
