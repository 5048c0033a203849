"""quart-trio's HTTP connection, except that a body held in memory (every JSON answer)
goes out in one ASGI message instead of two.

Quart sends a body as ``http.response.body`` with ``more_body: True``, then an empty one
with ``more_body: False``: each message is one more pass through the edge middleware
and hypercorn (issue 16: a measurable share of an idle read). Streamed bodies (exports,
files) are left to Quart as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart.utils import encode_headers
from quart.wrappers.response import DataBody
from quart_trio.asgi import TrioASGIHTTPConnection

if TYPE_CHECKING:
    from hypercorn.typing import ASGISendCallable


class Connection(TrioASGIHTTPConnection):
    """See the module docstring; set as the app's ``asgi_http_class``."""

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        body = getattr(response, "response", None)
        if type(body) is not DataBody:
            await super()._send_response(send, response)
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": encode_headers(response.headers),
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": body.data[body.begin : body.end],  # a Range request's part
                "more_body": False,
            }
        )
