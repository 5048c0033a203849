"""Run the real ``triaged`` CLI with one extra route that reads its body slowly.

The drain tests need requests that stay in flight while the client trickles a body;
the foundation has no body-reading route yet, so this launcher adds ``POST /test/body``
to the app the supervisor builds, then runs the unchanged CLI.
"""

from __future__ import annotations

from quart import request

import daemon.supervisor as supervisor
from daemon.api.access import public
from daemon.cli import main

_original_create_app = supervisor.create_app


def create_app_with_body_route(context):
    app = _original_create_app(context)

    @app.post("/test/body")
    @public
    async def body():
        data = await request.get_data()
        return {"bytes": len(data)}

    return app


supervisor.create_app = create_app_with_body_route

if __name__ == "__main__":
    main()
