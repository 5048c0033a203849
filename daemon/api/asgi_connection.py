"""quart-trio's HTTP connection, with fewer passes per request (issue 16: each is a
measurable share of an idle read, and under load each waits for a whole pass of the loop).

- A body held in memory (every JSON answer) goes out in one ASGI message instead of two.
  Quart sends a body as ``http.response.body`` with ``more_body: True``, then an empty one
  with ``more_body: False``: each message is one more pass through the edge middleware
  and hypercorn. Streamed bodies (exports, files) are left to Quart as they are.
- The request is handled in the task hypercorn starts for it (its ASGI call) rather than
  in a second child task (quart-trio starts both the request and its message reader as
  children): one task start, and one pass of the loop, fewer per request. Cancellation is
  as before: whichever of the two finishes first cancels the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from quart.utils import encode_headers
from quart.wrappers.response import DataBody
from quart_trio.asgi import TrioASGIHTTPConnection

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable


class Connection(TrioASGIHTTPConnection):
    """See the module docstring; set as the app's ``asgi_http_class``."""

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        request = self._create_request_from_scope(send)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.handle_messages, nursery, request, receive)
            await self.handle_request(nursery, request, send)

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
