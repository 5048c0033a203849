"""How the ``openai`` analyzer reaches and uses its model server: one frozen value.

Built once by the settings (which read the environment) and passed to
:class:`~daemon.modules.analysis.llm.provider.OpenAIAnalyzer`. Invalid values raise
``ValueError`` naming the field when the config is built, never later.

``base_url`` follows the OpenAI convention: the API root *including* the version path,
e.g. ``http://127.0.0.1:8000/v1`` (vLLM, llama.cpp, LocalAI) or
``http://127.0.0.1:11434/v1`` (Ollama); requests go to ``{base_url}/chat/completions``.
The API key is a :class:`pydantic.SecretStr`: it never appears in ``repr``, logs or
error messages, and is sent only as ``Authorization: Bearer`` when set.
"""

from __future__ import annotations

import math

import attrs
import httpx
from pydantic import SecretStr

from daemon.modules.analysis.llm.prompt import PROMPT_VERSION

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TOTAL_TIMEOUT = 120.0  # one model call, queueing at the server included
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_CALLS_PER_DOCUMENT = 8
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_PROBE_INTERVAL = 10.0


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value if value is None or value.get_secret_value() else None
    if not isinstance(value, str):
        raise TypeError("api_key must be a string")
    return SecretStr(value) if value else None


def _base_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"base_url {value!r} is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url {value!r} must be an http:// or https:// URL with a host")
    if url.userinfo:
        raise ValueError("base_url must not contain user information (use api_key)")
    if url.query or url.fragment:
        raise ValueError(f"base_url {value!r} must not have a query or fragment")
    return str(url).rstrip("/")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, not {value!r}")


def _at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer of at least 1, not {value!r}")


def _temperature(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise ValueError(f"temperature must be a number in [0, 2], not {value!r}")


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string")


@attrs.frozen(kw_only=True)
class LlmConfig:
    """Where the model server is and how the analyzer treats it.

    - ``base_url``, ``model``, ``api_key``: the server, the model name it serves, and an
      optional bearer token.
    - ``connect_timeout``: seconds to establish a connection; ``total_timeout``: seconds
      for one whole call (sending, the model's thinking, reading the answer).
    - ``temperature``: sampling temperature, 0 for the most repeatable answers.
    - ``max_output_tokens``: ``max_tokens`` sent with each call (``None``: not sent).
    - ``max_concurrency``: model calls in flight at once across the process (all callers
      of one analyzer instance share it).
    - ``max_calls_per_document``: chunk calls, repair calls and the summary call of one
      document together; chunks beyond it are skipped (the outcome says so).
    - ``breaker_failures``: consecutive transient failures that open the circuit;
      ``breaker_probe_interval``: seconds between probe calls while it is open.
    - ``prompt_version``: recorded with every analysis; change it with the prompt.
    """

    base_url: str = attrs.field(converter=_base_url)
    model: str = attrs.field(validator=_non_empty)
    api_key: SecretStr | None = attrs.field(default=None, converter=_secret, repr=False)
    connect_timeout: float = attrs.field(default=DEFAULT_CONNECT_TIMEOUT, validator=_positive)
    total_timeout: float = attrs.field(default=DEFAULT_TOTAL_TIMEOUT, validator=_positive)
    temperature: float = attrs.field(default=DEFAULT_TEMPERATURE, validator=_temperature)
    max_output_tokens: int | None = attrs.field(
        default=DEFAULT_MAX_OUTPUT_TOKENS,
        validator=attrs.validators.optional(_at_least_one),
    )
    max_concurrency: int = attrs.field(default=DEFAULT_MAX_CONCURRENCY, validator=_at_least_one)
    max_calls_per_document: int = attrs.field(
        default=DEFAULT_MAX_CALLS_PER_DOCUMENT, validator=_at_least_one
    )
    breaker_failures: int = attrs.field(default=DEFAULT_BREAKER_FAILURES, validator=_at_least_one)
    breaker_probe_interval: float = attrs.field(
        default=DEFAULT_BREAKER_PROBE_INTERVAL, validator=_positive
    )
    prompt_version: str = attrs.field(default=PROMPT_VERSION, validator=_non_empty)

    @property
    def chat_url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"
