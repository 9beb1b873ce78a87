"""A stand-in for Serve's OpenAI endpoint on a real loopback port: records, answers.

The playground talks to the OpenAI API over HTTP; tests that run without Ray point it
at this (the boundary the fake ServeClient stands for, seen from the HTTP side). A
request with `"stream": true` is answered as vLLM does: one server-sent event per
word, a usage chunk when `stream_options.include_usage` asks for it, then `[DONE]`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """A stand-in for Serve's OpenAI endpoint on a real port: records, answers."""

    def __init__(self, answer: str = "The capital of France is Paris.") -> None:
        self.requests: list[dict[str, Any]] = []
        self.refuse: tuple[int, str] | None = None  # (status, message): answer that instead
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                outer.requests.append(
                    {
                        "path": self.path,
                        "body": body,
                        "authorization": self.headers.get("authorization"),
                    }
                )
                if outer.refuse is not None:
                    status, message = outer.refuse
                    error = {"error": {"message": message, "type": "x", "code": status}}
                    self._send(status, "application/json", json.dumps(error).encode())
                elif body.get("stream"):
                    self._stream(body)
                else:
                    reply = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
                    self._send(200, "application/json", json.dumps(reply).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any]) -> None:
                words = answer.split(" ")
                pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
                events = [
                    {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                    for p in pieces
                ]
                events[-1]["choices"][0]["finish_reason"] = "stop"
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 9, "completion_tokens": len(pieces)}
                    events.append({"choices": [], "usage": usage})
                data = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
                self._send(200, "text/event-stream", (data + "data: [DONE]\n\n").encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
