"""One chat-completions call over HTTP, with every failure translated at this edge.

:class:`ChatClient` POSTs ``{base_url}/chat/completions`` with httpx (on Trio), no
environment settings (``trust_env=False``: no proxies, no netrc), the connect timeout
for connecting and the total timeout for the whole call (a server that drips bytes
cannot hold it longer), and ``Authorization: Bearer`` only when an API key is set. The
answer body is read up to :data:`MAX_BODY_BYTES`.

Answers accepted (:func:`parse_reply`), liberal in shape:

- OpenAI, vLLM, LocalAI, Ollama's ``/v1``: ``choices[0].message.content``, a string or a
  list of text parts; ``usage`` optional;
- llama.cpp's server: the same plus extra fields (``timings``, whose ``prompt_n`` and
  ``predicted_n`` stand in for a missing ``usage``); ``choices[0].text`` too;
- Ollama's native ``/api/chat`` shape (``message.content``), in case the base URL points
  there.

Errors (see :mod:`daemon.shared.errors`):

==========================  ===============================================================
raised                      when
==========================  ===============================================================
AnalyzerRateLimited         429 (``retry_after`` from Retry-After: seconds or an HTTP date,
                            clamped to [0, 3600])
AnalyzerUnavailable         5xx, 408 (``server_error``); timeouts (``timeout``); refused,
                            reset or dropped connections (``connection``); malformed HTTP,
                            a body that is not a chat completion (``protocol``); 401, 403,
                            404, other unexpected statuses (``misconfigured``: the message
                            says what the operator should check)
FormatRejected              400 or 422 about ``response_format`` while one was sent: the
                            caller falls back to a simpler output mode (never escapes the
                            package)
AnalysisFailed              another 400, 413 or 422: this request cannot be served (say, the
                            text exceeds the model's context); ``raw_output`` holds the
                            server's answer
==========================  ===============================================================
"""

from __future__ import annotations

import email.utils
import enum
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from daemon import __version__
from daemon.modules.analysis.errors import AnalysisFailed, AnalyzerRateLimited, AnalyzerUnavailable
from daemon.shared.errors import describe_cause

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.modules.analysis.llm.config import LlmConfig
    from daemon.modules.analysis.llm.prompt import Message

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_RETRY_AFTER = 3600.0
SERVER_MESSAGE_MAX_CHARS = 300
USER_AGENT = f"triaged/{__version__}"

_FORMAT_WORDS = re.compile(
    r"response_format|response format|json_schema|json_object|json schema|grammar|guided",
    re.IGNORECASE,
)


class OutputMode(enum.StrEnum):
    """How structured output is asked for, from the most to the least constrained."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    TEXT = "text"

    @property
    def fallback(self) -> OutputMode | None:
        """The next simpler mode, ``None`` after ``text``."""
        order = list(OutputMode)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class FormatRejected(Exception):  # a signal inside the package, never raised out
    """The server refused the request's ``response_format``."""


@attrs.frozen(kw_only=True)
class ChatReply:
    """The first choice of a chat completion: its text (``""`` when none), why it
    stopped, and the token counts the server reported (``None`` when it did not)."""

    content: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatClient:
    """Chat-completions calls to one server (see the module docstring).

    Holds an ``httpx.AsyncClient`` (a connection pool of ``config.max_concurrency``
    connections); :meth:`aclose` closes it. Cancellation-safe.
    """

    def __init__(
        self, config: LlmConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            headers=headers,
            timeout=httpx.Timeout(config.total_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def request_body(
        self, messages: Sequence[Message], response_format: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The JSON body of a call."""
        body: dict[str, Any] = {
            "model": self._config.model,
            "messages": list(messages),
            "temperature": self._config.temperature,
            "stream": False,
        }
        if self._config.max_output_tokens is not None:
            body["max_tokens"] = self._config.max_output_tokens
        if response_format is not None:
            body["response_format"] = response_format
        return body

    async def complete(
        self, messages: Sequence[Message], *, response_format: dict[str, Any] | None
    ) -> ChatReply:
        """One chat completion of ``messages``.

        Raises:
            AnalyzerRateLimited, AnalyzerUnavailable, AnalysisFailed, FormatRejected: see
                the module docstring.
        """
        url = self._config.chat_url
        body = self.request_body(messages, response_format)
        timeout = self._config.total_timeout
        try:
            with trio.fail_after(timeout):
                status, headers, data = await self._post(url, body)
        except trio.TooSlowError as exc:
            raise AnalyzerUnavailable(
                f"the model server did not answer within {timeout:g} s", reason="timeout"
            ) from exc
        except httpx.TimeoutException as exc:
            raise AnalyzerUnavailable(
                f"the model server timed out ({type(exc).__name__})", reason="timeout"
            ) from exc
        except httpx.ConnectError as exc:
            raise AnalyzerUnavailable(
                f"cannot connect to the model server at {self._config.base_url}: "
                f"{describe_cause(exc)}",
                reason="connection",
            ) from exc
        except (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError) as exc:
            raise AnalyzerUnavailable(
                f"the model server broke the HTTP protocol: {describe_cause(exc)}",
                reason="protocol",
            ) from exc
        except httpx.HTTPError as exc:
            raise AnalyzerUnavailable(
                f"the connection to the model server failed: {describe_cause(exc)}",
                reason="connection",
            ) from exc
        _raise_for_status(status, headers, data, url, self._config.model, response_format)
        return parse_reply(data)

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        async with self._http.stream("POST", url, json=body) as response:
            data = bytearray()
            too_large = False
            # Stop by cancelling the read, not by leaving the loop (see
            # daemon.modules.ingestion.fetch: the async generators below unwind cleanly).
            with trio.CancelScope() as stop:
                async for chunk in response.aiter_bytes():
                    if too_large:
                        continue
                    data += chunk
                    if len(data) > MAX_BODY_BYTES:
                        too_large = True
                        stop.cancel()
            if too_large:
                raise AnalyzerUnavailable(
                    f"the model server's answer is larger than {MAX_BODY_BYTES} bytes",
                    reason="protocol",
                )
            return response.status_code, response.headers, bytes(data)


def _raise_for_status(
    status: int,
    headers: httpx.Headers,
    data: bytes,
    url: str,
    model: str,
    response_format: dict[str, Any] | None,
) -> None:
    if 200 <= status < 300:
        return
    said = server_message(data)
    detail = f"HTTP {status}" + (f": {said}" if said else "")
    retry_after = parse_retry_after(headers.get("retry-after"), now=datetime.now(UTC))
    if status == 429:
        raise AnalyzerRateLimited(
            f"the model server is rate limiting ({detail})", retry_after=retry_after
        )
    if status >= 500 or status == 408:
        raise AnalyzerUnavailable(
            f"the model server failed ({detail})", reason="server_error", retry_after=retry_after
        )
    if status in (400, 422) and response_format is not None and _FORMAT_WORDS.search(said):
        raise FormatRejected(detail)
    if status in (401, 403):
        raise AnalyzerUnavailable(
            f"the model server refused our credentials ({detail}): check the configured API key",
            reason="misconfigured",
        )
    if status == 404:
        raise AnalyzerUnavailable(
            f"the model server answered {detail} for {url}: check the base URL "
            f"(it should end in /v1) and that the model {model!r} is served",
            reason="misconfigured",
        )
    if status in (400, 413, 422):
        raise AnalysisFailed(
            f"the model server rejected the request ({detail})",
            raw_output=data[: SERVER_MESSAGE_MAX_CHARS * 4].decode("utf-8", "replace"),
            errors=[detail],
        )
    raise AnalyzerUnavailable(
        f"the model server answered {detail} for {url}: check the base URL",
        reason="misconfigured",
    )


def server_message(data: bytes) -> str:
    """The error message in an error answer (``error.message``, ``error``, ``detail``
    or ``message`` of a JSON body, else the text), on one line and cut short."""
    text = data.decode("utf-8", "replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        error = decoded.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        for candidate in (error, decoded.get("detail"), decoded.get("message")):
            if isinstance(candidate, str) and candidate.strip():
                text = candidate
                break
            if candidate is not None and not isinstance(candidate, str):
                text = json.dumps(candidate)
                break
    return " ".join(text.split())[:SERVER_MESSAGE_MAX_CHARS]


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` value in seconds from ``now`` (aware), clamped to [0, 3600]:
    delta-seconds or an HTTP date. ``None`` if absent or unparseable."""
    if value is None:
        return None
    value = value.strip()
    seconds: float
    if value.isascii() and value.isdigit():
        seconds = float(int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def parse_reply(data: bytes) -> ChatReply:
    """The first choice of a chat-completion body (see the module docstring).

    Raises:
        AnalyzerUnavailable: (``protocol``) the body is not JSON or not a completion;
            (``server_error``) it is an error object sent with a 2xx status.
    """
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise AnalyzerUnavailable(
            "the model server's answer is not JSON", reason="protocol"
        ) from exc
    if not isinstance(body, dict):
        raise AnalyzerUnavailable(
            "the model server's answer is not a JSON object", reason="protocol"
        )
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else choice.get("text")
        finish_reason = choice.get("finish_reason")
    elif isinstance(body.get("message"), dict):  # Ollama's native /api/chat
        content = body["message"].get("content")
        finish_reason = body.get("done_reason")
    elif "error" in body:
        raise AnalyzerUnavailable(
            f"the model server answered an error: {server_message(data)}",
            reason="server_error",
        )
    else:
        raise AnalyzerUnavailable("the model server's answer has no choices", reason="protocol")
    prompt_tokens, completion_tokens = _tokens(body)
    return ChatReply(
        content=_text(content),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}]
        return "".join(
            str(part.get("text") or "") if isinstance(part, dict) else str(part) for part in content
        )
    if content is None:
        return ""
    return json.dumps(content)  # a server that decoded the JSON for us


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _tokens(body: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = body.get("usage")
    if isinstance(usage, dict):
        prompt, completion = (
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
        )
        if prompt is not None or completion is not None:
            return prompt, completion
    timings = body.get("timings")  # llama.cpp's server
    if isinstance(timings, dict):
        return _count(timings.get("prompt_n")), _count(timings.get("predicted_n"))
    return None, None
