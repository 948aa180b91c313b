"""A local OpenAI-compatible server (``POST /v1/chat/completions``) that replays a script, so
tests can drive the real langchain-openai client over HTTP without leaving 127.0.0.1.

It can also misbehave on purpose (``faults``): answer a request with an HTTP error (503, 500, 429,
with a ``Retry-After``) or drop the connection in the middle of the answer (a reset, as the client
sees it), without consuming the script item, so a retried request gets the real answer."""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


_ON_PURPOSE = "OpenAIStubServer: connection dropped on purpose"


class _QuietResets(logging.Filter):
    """uvicorn logs a traceback for every connection the stub drops on purpose: not an error here."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionResetError) and str(exc) == _ON_PURPOSE)


logging.getLogger("uvicorn.error").addFilter(_QuietResets())


def text_reply(content: str) -> dict[str, Any]:
    return {"content": content}


def tool_reply(name: str, arguments: dict[str, Any] | str, content: str = "") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"content": content, "tool_calls": [{"name": name, "arguments": args}]}


class OpenAIStubServer:
    """Use as a context manager; ``url`` is the base URL to give ChatOpenAI (ends with /v1).

    Script items: ``text_reply(...)``, ``tool_reply(...)``, or a callable(request_json) -> item.
    ``responder``: a callable(request_json) -> item that answers every request (instead of a script).
    ``faults``: a callable(request_json, attempt) -> None | "503" | "500" | "429" | "reset", where
    ``attempt`` counts the requests with this very body (1 for the first, 2 for its first retry...).
    A status fault carries ``retry-after-ms: retry_after_ms``; "reset" closes the connection after
    the headers. Faulted requests are listed in ``faults_sent``.
    """

    def __init__(self, script: list[Any] | None = None, model: str = "stub-model", responder=None, faults=None,
                 retry_after_ms: int = 5):
        self.script = list(script or [])
        self.model = model
        self.responder = responder
        self.faults = faults
        self.retry_after_ms = retry_after_ms
        self.faults_sent: list[str] = []
        self._attempts: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *items: Any) -> None:
        with self._lock:
            self.script.extend(items)

    def _fault(self, body: dict[str, Any]):
        """The fault this request gets (None: a real answer)."""
        if self.faults is None:
            return None
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fault = self.faults(body, attempt)
        if fault is None:
            return None
        with self._lock:
            self.faults_sent.append(fault)
        if fault == "reset":
            def broken():
                yield "data: {"
                raise ConnectionResetError(_ON_PURPOSE)
            return StreamingResponse(broken(), media_type="text/event-stream")
        return JSONResponse({"error": {"message": f"OpenAIStubServer: fault {fault} on purpose", "type": "stub"}},
                            status_code=int(fault), headers={"retry-after-ms": str(self.retry_after_ms)})

    async def _chat(self, request: Request):
        body = await request.json()
        faulted = self._fault(body)
        if faulted is not None:
            return faulted
        with self._lock:
            self.requests.append(body)
            if self.responder is not None:
                item = self.responder
            elif not self.script:
                return JSONResponse({"error": {"message": "OpenAIStubServer: the script is exhausted", "type": "stub"}},
                                    status_code=500)
            else:
                item = self.script.pop(0)
        if callable(item):
            item = item(body)
        message: dict[str, Any] = {"role": "assistant", "content": item.get("content") or None}
        if item.get("tool_calls"):
            # ids follow from the request, so a conversation (and which of its requests a fault hits) is
            # the same on every run
            seed = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
            message["tool_calls"] = [{"id": f"call_{seed}_{i}", "type": "function",
                                      "function": {"name": c["name"], "arguments": c["arguments"]}}
                                     for i, c in enumerate(item["tool_calls"])]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        completion_tokens = max(1, len(str(item.get("content") or "").split()))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        finish = "tool_calls" if item.get("tool_calls") else "stop"
        created = int(time.time())
        if body.get("stream"):
            def events():
                delta = {"role": "assistant", "content": message["content"] or ""}
                if message.get("tool_calls"):
                    delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]
                chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": self.model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage}
                yield f"data: {json.dumps(end)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"id": "chatcmpl-stub", "object": "chat.completion", "created": created, "model": self.model,
                             "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

    def __enter__(self) -> "OpenAIStubServer":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("OpenAIStubServer did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
