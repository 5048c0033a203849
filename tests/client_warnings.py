"""Warnings of the tests' own HTTP client that are not the server's doing."""

from __future__ import annotations

import pytest

# A request the server refuses before reading its body (413), or cuts off by dying
# (SIGKILL), leaves httpx's request-body generator unfinished; trio reports it when it
# is garbage collected. That is the client library's tidiness, not server behaviour.
ABANDONED_REQUEST_BODY = pytest.mark.filterwarnings(
    r"ignore:Async generator 'httpx\._[a-z]+\.[A-Za-z]+Stream\.__aiter__':ResourceWarning",
    r"ignore:Exception ignored in. <async_generator object [A-Za-z]+Stream\.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning",
)
