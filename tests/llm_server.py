"""An OpenAI-compatible model server for the tests: real HTTP/1.1 on 127.0.0.1.

It plays a model that reads the document between the delimiters its client declared in
the system prompt and answers from keywords in it (:func:`derive_answer`), so tests
can check results. What it does on each call is scripted (:meth:`LlmServer.script`),
drawn at random with a seed (:meth:`LlmServer.randomize`), or the default
(``LlmServer.default``). Behaviours (``Reply.kind``):

====================  =================================================================
ok                    a correct answer (``delay`` seconds late, if given)
slow                  a correct answer after ``delay`` (default ``slow_delay``) seconds
malformed             JSON cut in half
prose                 no JSON at all
wrong_types           JSON whose fields have the wrong types
out_of_taxonomy       a correct answer with the category ``space-weather``
bad_severity          a correct answer with the severity ``catastrophic``
fenced                the JSON inside prose and a ```json fence
empty                 an empty message
cut_off               JSON cut short, ``finish_reason: length``
rate_limited          429 with ``Retry-After`` (``retry_after``, default ``"1"``)
error                 500; ``unavailable``: 503 with ``Retry-After``
status                any ``status`` with an OpenAI-style error body
drop                  headers announcing 1000 bytes, 20 of them, then the connection closes
hangup                the connection closes without any answer
garbage               bytes that are not HTTP, then close
not_json              200 with an HTML body
no_choices            200 with a JSON body that is not a completion
error_object          200 with ``{"error": {...}}``
====================  =================================================================

Server-wide settings: ``shape`` (``openai``/``vllm`` with ``usage``; ``ollama`` without
``usage``; ``llamacpp`` with ``timings``, no ``usage``, JSON in a fence inside prose),
``supported_formats`` (``response_format`` types it accepts; any other gets a 400 that
names ``response_format``, whatever the script says), and ``obey``: where the simulated
model finds instructions it follows (``"never"``; ``"outside"``: only in the prompt
outside the data section, like a model that respects delimiters; ``"anywhere"``: also
inside it, like a fully compromised model). Instructions it understands: ``set
severity|category|confidence to X``, ``set summary to "..."``, ``respond in
yaml|xml|plain text``, ``add field NAME [with value V]``, ``add N entities``.

Every request is recorded (:class:`Call`): headers, body, the declared delimiter token,
the data section and the text outside it, and what was answered. ``max_in_flight`` is
the most chat requests handled at once. :meth:`LlmServer.stop` closes the listener and
every connection; :meth:`LlmServer.start` listens again on the same port.
"""

from __future__ import annotations

import json
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

KINDS = frozenset(
    {
        "ok",
        "slow",
        "malformed",
        "prose",
        "wrong_types",
        "out_of_taxonomy",
        "bad_severity",
        "fenced",
        "empty",
        "cut_off",
        "rate_limited",
        "error",
        "unavailable",
        "status",
        "drop",
        "hangup",
        "garbage",
        "not_json",
        "no_choices",
        "error_object",
    }
)
SHAPES = frozenset({"openai", "vllm", "ollama", "llamacpp"})
OBEY = frozenset({"never", "outside", "anywhere"})

CATEGORY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("security", ("breach", "ransomware", "phishing", "malware")),
    ("outage", ("outage", "downtime", "unreachable")),
    ("billing", ("invoice", "refund", "overcharged")),
    ("legal", ("lawsuit", "subpoena")),
    ("privacy", ("gdpr", "personal data")),
    ("complaint", ("complaint", "rude")),
    ("request", ("feature request", "please provide")),
)
SEVERITY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("critical", ("emergency",)),
    ("high", ("urgent",)),
    ("medium", ("soon",)),
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CVE = re.compile(r"CVE-\d{4}-\d{4,7}")
_INVOICE = re.compile(r"INV-\d+")
_TOKEN = re.compile(r"<<<DOC-([0-9a-f]+)>>>")
INSTRUCTIONS = {
    "severity": re.compile(r"set (?:the )?severity to ['\"]?([\w-]+)", re.IGNORECASE),
    "category": re.compile(r"set (?:the )?category to ['\"]?([\w-]+)", re.IGNORECASE),
    "confidence": re.compile(r"set (?:the )?confidence to (-?[\d.]+)", re.IGNORECASE),
    "summary": re.compile(r"set (?:the )?summary to \"([^\"]{1,3000})\"", re.IGNORECASE),
    "format": re.compile(
        r"(?:respond|answer|reply|output) (?:only )?in (yaml|xml|plain text)", re.IGNORECASE
    ),
    "field": re.compile(
        r"add (?:a |the )?field ['\"]?(\w+)['\"]?(?: with value ['\"]?([\w-]+))?", re.IGNORECASE
    ),
    "entities": re.compile(r"add (\d+) entities", re.IGNORECASE),
}


@attrs.frozen
class Reply:
    """What the server does for one call (see the module docstring)."""

    kind: str = "ok"
    shape: str | None = None  # overrides the server's
    delay: float = 0.0
    retry_after: str | None = None
    status: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown reply kind {self.kind!r}")
        if self.shape is not None and self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")


def _reply(value: str | Reply) -> Reply:
    return value if isinstance(value, Reply) else Reply(value)


@attrs.define
class Call:
    """One request as received, and what was done with it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    token: str | None = None  # the delimiter token declared in the system prompt
    document: str | None = None  # the data section between the declared delimiters
    outside: str = ""  # every message's text with the data section cut out
    task: str = "analysis"  # or "summary"
    reply: Reply | None = None
    answered: str | None = None  # "format_rejected" or the reply kind
    content: str | None = None  # the message content sent back

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.body if isinstance(self.body, dict) else {}
        messages = body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def format_type(self) -> str | None:
        body = self.body if isinstance(self.body, dict) else {}
        fmt = body.get("response_format")
        return fmt.get("type") if isinstance(fmt, dict) else None


def _has(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def derive_answer(document: str) -> dict[str, Any]:
    """The honest model's answer for a data section: category by keyword counts (ties:
    the order of ``CATEGORY_WORDS``; none: ``other``), severity from ``SEVERITY_WORDS``
    (else ``low``), the first sentence as summary, emails/CVEs/``INV-n`` as entities."""
    text = document
    if text.startswith("Title: "):
        title, _, rest = text.partition("\n")
        text = f"{rest.strip()} {title.removeprefix('Title: ')}".strip()
    counts = {
        name: sum(len(re.findall(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)) for w in words)
        for name, words in CATEGORY_WORDS
    }
    best = max(counts.values(), default=0)
    category = next((n for n, c in counts.items() if c == best), "other") if best else "other"
    severity = next(
        (level for level, words in SEVERITY_WORDS if any(_has(text, w) for w in words)), "low"
    )
    first = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    entities = [
        {"type": "email", "value": v, "normalized": v.lower()} for v in _EMAIL.findall(text)
    ]
    entities += [{"type": "cve", "value": v, "normalized": None} for v in _CVE.findall(text)]
    entities += [{"type": "identifier", "value": v} for v in _INVOICE.findall(text)]
    matched = [w for _, words in CATEGORY_WORDS for w in words if _has(text, w)]
    return {
        "category": category,
        "severity": severity,
        "summary": first[:200] or "Empty document.",
        "entities": entities,
        "confidence": round(min(0.95, 0.5 + 0.15 * best), 2) if best else 0.4,
        "rationale": f"Matched: {', '.join(matched)}." if matched else "No keywords matched.",
    }


def _obey(answer: dict[str, Any], text: str) -> tuple[dict[str, Any], str | None]:
    """``answer`` changed as instructions in ``text`` say; and the output format asked."""
    answer = dict(answer)
    found = {name: pattern.search(text) for name, pattern in INSTRUCTIONS.items()}
    if found["severity"]:
        answer["severity"] = found["severity"].group(1)
    if found["category"]:
        answer["category"] = found["category"].group(1)
    if found["confidence"]:
        answer["confidence"] = float(found["confidence"].group(1))
    if found["summary"]:
        answer["summary"] = found["summary"].group(1)
    if found["field"]:
        answer[found["field"].group(1)] = found["field"].group(2) or True
    if found["entities"]:
        count = int(found["entities"].group(1))
        answer["entities"] = [{"type": "other", "value": f"thing {i}"} for i in range(count)]
    form = found["format"].group(1).lower() if found["format"] else None
    return answer, form


def _formatted(answer: dict[str, Any], form: str | None) -> str:
    if form == "yaml":
        return "\n".join(f"{key}: {value}" for key, value in answer.items())
    if form == "xml":
        return "<analysis>" + "".join(f"<{k}>{v}</{k}>" for k, v in answer.items()) + "</analysis>"
    if form == "plain text":
        return f"This document is about {answer.get('category')}."
    return json.dumps(answer)


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


@attrs.define(eq=False)
class LlmServer:
    """See the module docstring. Start it with :func:`serve_llm` (or :meth:`start`)."""

    shape: str = "openai"
    supported_formats: frozenset[str] = frozenset({"json_schema", "json_object"})
    obey: str = "never"
    default: Reply = Reply()
    slow_delay: float = 1.0
    model: str = "test-model"
    port: int = 0
    calls: list[Call] = attrs.Factory(list)
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    _script: deque[Reply] = attrs.field(init=False, factory=deque)
    _weights: list[tuple[Reply, float]] = attrs.field(init=False, factory=list)
    _rng: random.Random = attrs.field(init=False, factory=random.Random)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None)
    _scope: trio.CancelScope | None = attrs.field(init=False, default=None)
    _stopped: trio.Event | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if self.obey not in OBEY:
            raise ValueError(f"unknown obey mode {self.obey!r}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/chat/completions")]

    def script(self, *replies: str | Reply) -> None:
        """Queue replies for the next calls, in order (then random draws, then the
        default)."""
        self._script.extend(_reply(r) for r in replies)

    def randomize(self, weights: dict[str | Reply, float], *, seed: int) -> None:
        """Draw each unscripted call's reply: each with its probability, the default
        with what is left."""
        if sum(weights.values()) > 1:
            raise ValueError("probabilities add up to more than 1")
        self._weights = [(_reply(k), p) for k, p in weights.items()]
        self._rng = random.Random(seed)

    def _next_reply(self) -> Reply:
        if self._script:
            return self._script.popleft()
        if self._weights:
            draw = self._rng.random()
            for reply, probability in self._weights:
                if draw < probability:
                    return reply
                draw -= probability
        return self.default

    # --- lifecycle ----------------------------------------------------------------

    async def start(self, nursery: trio.Nursery | None = None) -> None:
        """Listen (again) on 127.0.0.1, on the same port after a stop."""
        self._nursery = nursery or self._nursery
        if self._nursery is None:
            raise RuntimeError("start needs a nursery the first time")
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        await self._nursery.start(self._serve, listeners, self._scope, self._stopped)

    async def stop(self) -> None:
        """Close the listener and every open connection; returns once all are closed."""
        if self._scope is not None and self._stopped is not None:
            self._scope.cancel()
            await self._stopped.wait()
            self._scope = None

    async def _serve(
        self,
        listeners: list[trio.SocketListener],
        scope: trio.CancelScope,
        stopped: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with scope:
                async with trio.open_nursery() as connections:
                    task_status.started()
                    await trio.serve_listeners(self._handle, listeners, handler_nursery=connections)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            stopped.set()

    # --- HTTP ---------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = bytearray()
        try:
            while True:
                request = await _read_request(stream, buffer)
                if request is None:
                    return
                if not await self._dispatch(stream, *request):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _dispatch(
        self, stream: trio.SocketStream, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> bool:
        """Answer one request; False when the connection must close."""
        call = Call(method=method, path=path, headers=headers)
        self.calls.append(call)
        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            await _send(stream, 200, json.dumps(models).encode())
            return True
        if method != "POST" or path != "/v1/chat/completions":
            await _send(stream, 404, _error_body("no such route", "not_found"))
            return True
        try:
            call.body = json.loads(raw)
        except ValueError:
            await _send(stream, 400, _error_body("the body is not JSON", "invalid_request"))
            return True
        _read_prompt(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat(stream, call)
        finally:
            self.in_flight -= 1

    async def _chat(self, stream: trio.SocketStream, call: Call) -> bool:
        if call.format_type is not None and call.format_type not in self.supported_formats:
            call.answered = "format_rejected"
            message = f"response_format type {call.format_type!r} is not supported"
            body = _error_body(message, "invalid_request_error", param="response_format")
            await _send(stream, 400, body)
            return True
        reply = self._next_reply()
        call.reply = reply
        call.answered = reply.kind
        delay = reply.delay or (self.slow_delay if reply.kind == "slow" else 0.0)
        if delay:
            await trio.sleep(delay)
        kind = reply.kind
        if kind == "rate_limited":
            headers = {"Retry-After": reply.retry_after or "1"}
            await _send(stream, 429, _error_body("slow down", "rate_limit"), headers)
            return True
        if kind in ("error", "unavailable", "status"):
            status = reply.status or (503 if kind == "unavailable" else 500)
            headers = {}
            if reply.retry_after or kind == "unavailable":
                headers["Retry-After"] = reply.retry_after or "2"
            await _send(stream, status, _error_body(f"failure {status}", "server_error"), headers)
            return True
        if kind == "drop":
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            await stream.send_all(head + b'{"id": "chatcmpl-1",')
            return False
        if kind == "hangup":
            return False
        if kind == "garbage":
            await stream.send_all(b"SPEAKING NONSENSE, NOT HTTP\r\n\r\n")
            return False
        if kind == "not_json":
            await _send(stream, 200, b"<html>Bad gateway</html>", {"Content-Type": "text/html"})
            return True
        if kind == "no_choices":
            await _send(stream, 200, b'{"object": "list", "data": []}')
            return True
        if kind == "error_object":
            await _send(stream, 200, _error_body("the model crashed", "server_error"))
            return True
        content, finish = self._content(call, kind)
        call.content = content
        body = _completion(
            content, finish, reply.shape or self.shape, self.model, _prompt_chars(call)
        )
        await _send(stream, 200, json.dumps(body).encode())
        return True

    def _content(self, call: Call, kind: str) -> tuple[str, str]:
        """The message content of a (200) answer, and its ``finish_reason``."""
        if call.task == "summary":
            return json.dumps({"summary": _summary_of(call.document or "")}), "stop"
        answer = derive_answer(call.document if call.document is not None else call.outside)
        form = None
        if self.obey != "never":
            text = call.outside
            if self.obey == "anywhere":
                text = f"{text}\n{call.document or ''}"
            answer, form = _obey(answer, text)
        if kind == "out_of_taxonomy":
            answer["category"] = "space-weather"
        elif kind == "bad_severity":
            answer["severity"] = "catastrophic"
        elif kind == "wrong_types":
            answer = {
                "category": 7,
                "severity": 3,
                "summary": ["not", "a", "string"],
                "entities": "none",
                "confidence": "very high",
            }
        content = _formatted(answer, form)
        if kind == "malformed":
            return content[: len(content) // 2], "stop"
        if kind == "cut_off":
            return content[: len(content) // 3], "length"
        if kind == "prose":
            return "I am sorry, but I cannot analyse this document.", "stop"
        if kind == "empty":
            return "", "stop"
        shape = call.reply.shape if call.reply and call.reply.shape else self.shape
        if kind == "fenced" or (shape == "llamacpp" and form is None):
            return f"Sure! Here is the analysis:\n```json\n{content}\n```\nAnything else?", "stop"
        return content, "stop"


def _summary_of(data: str) -> str:
    lines = [re.sub(r"^\d+\.\s*", "", line).strip() for line in data.splitlines()]
    return ("Combined: " + " | ".join(line for line in lines if line))[:480]


def _read_prompt(call: Call) -> None:
    """Find the declared delimiters, the data section and the text outside it."""
    messages = [m for m in call.messages if isinstance(m, dict)]
    texts = [m.get("content") if isinstance(m.get("content"), str) else "" for m in messages]
    system = next(
        (t for m, t in zip(messages, texts, strict=True) if m.get("role") == "system"), ""
    )
    if "part summaries" in system:
        call.task = "summary"
    declared = _TOKEN.search(system)
    outside = list(texts)
    if declared is not None:
        call.token = declared.group(1)
        start, end = f"<<<DOC-{call.token}>>>\n", f"\n<<<END-{call.token}>>>"
        for index, (message, text) in enumerate(zip(messages, texts, strict=True)):
            if message.get("role") != "user" or start not in text:
                continue
            head, _, rest = text.partition(start)
            data, found, tail = rest.partition(end)
            if found:
                call.document = data
                outside[index] = f"{head}[DATA]{tail}"
                break
    call.outside = "\n".join(outside)


def _prompt_chars(call: Call) -> int:
    return sum(len(str(m.get("content", ""))) for m in call.messages if isinstance(m, dict))


def _completion(content: str, finish: str, shape: str, model: str, prompt_chars: int) -> dict:
    prompt_tokens, completion_tokens = prompt_chars // 4 + 1, len(content) // 4 + 1
    message: dict[str, Any] = {"role": "assistant", "content": content}
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [choice],
    }
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if shape in ("openai", "vllm"):
        body["usage"] = usage
    if shape == "vllm":
        message.update({"reasoning_content": None, "tool_calls": []})
        choice.update({"logprobs": None, "stop_reason": None})
        body["prompt_logprobs"] = None
    elif shape == "ollama":
        body["system_fingerprint"] = "fp_ollama"
    elif shape == "llamacpp":
        body["timings"] = {
            "prompt_n": prompt_tokens,
            "prompt_ms": 12.5,
            "predicted_n": completion_tokens,
            "predicted_ms": 40.0,
        }
    return body


def _error_body(message: str, kind: str, *, param: str | None = None) -> bytes:
    error = {"message": message, "type": kind, "param": param, "code": None}
    return json.dumps({"error": error}).encode()


async def _send(
    stream: trio.SocketStream, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    fields = {"Content-Type": "application/json", **(headers or {})}
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    lines.append(f"Content-Length: {len(body)}")
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


async def _read_request(
    stream: trio.SocketStream, buffer: bytearray
) -> tuple[str, str, dict[str, str], bytes] | None:
    """The next request on the connection (method, path, headers, body); ``None`` when
    the client closes it between requests."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    buffer[:] = body[length:]
    return method, path, headers, bytes(body[:length])


@asynccontextmanager
async def serve_llm(**settings: Any) -> AsyncIterator[LlmServer]:
    """A started :class:`LlmServer` (``settings`` are its fields), stopped on exit."""
    server = LlmServer(**settings)
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        try:
            yield server
        finally:
            await server.stop()


def kinds(calls: Iterable[Call]) -> list[str | None]:
    """What was answered to each call, in order."""
    return [call.answered for call in calls]
