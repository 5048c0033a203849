"""sd_notify over ``$NOTIFY_SOCKET``: READY, STATUS, STOPPING, WATCHDOG.

One datagram of newline-separated ``KEY=VALUE`` fields per message. Without a notify
socket every call does nothing, so the daemon runs the same under systemd, Docker or a
terminal. A failed send is logged once and never stops the service.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from daemon.shared.config import SystemdEnvironment

log = logging.getLogger("triaged.systemd")


class Notifier:
    """Sends notifications to the service manager, if there is one."""

    def __init__(self, environment: SystemdEnvironment) -> None:
        self._environment = environment
        self._address: str | bytes | None = None
        self._socket: socket.socket | None = None
        self._warned = False
        address = environment.notify_socket
        if address:
            # An abstract socket name starts with '@', sent as a leading NUL byte.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
            # A stdlib socket can be created before trio.run; it is wrapped lazily.
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    async def notify(self, **fields: str | int) -> None:
        """Send ``KEY=VALUE`` fields, e.g. ``notify(READY=1, STATUS="serving")``."""
        if self._socket is None or self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(message, self._address)
        except BlockingIOError:
            # The manager's queue is full: wait once for room, then give up on this one.
            with trio.move_on_after(1):
                await trio.lowlevel.wait_writable(self._socket)
                self._send_or_warn(message)
        except OSError as exc:
            self._warn(exc)
        await trio.lowlevel.checkpoint()

    def _send_or_warn(self, message: bytes) -> None:
        assert self._socket is not None and self._address is not None
        try:
            self._socket.sendto(message, self._address)
        except OSError as exc:
            self._warn(exc)

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cannot notify systemd: %s", exc, extra={"action": "systemd.notify_failed"})

    async def run_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Ping ``WATCHDOG=1`` at half the watchdog timeout until cancelled.

        Runs as a Trio task on purpose: a stalled event loop stops the pings, and systemd
        then restarts the stuck process.
        """
        interval = self._environment.watchdog_interval
        task_status.started()
        if not self.enabled or interval is None:
            return
        while True:
            await self.notify(WATCHDOG=1)
            await trio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
