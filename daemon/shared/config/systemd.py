"""What systemd tells a ``Type=notify`` service through its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SystemdEnvironment:
    """What systemd tells a ``Type=notify`` service through its environment."""

    notify_socket: str | None
    watchdog_usec: int | None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half the timeout systemd enforces."""
        if not self.watchdog_usec:
            return None
        return self.watchdog_usec / 1_000_000 / 2


def read_systemd_environment() -> SystemdEnvironment:
    """``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (only when ``WATCHDOG_PID`` is us or unset)."""
    usec: int | None = None
    watchdog_pid = os.environ.get("WATCHDOG_PID")
    if watchdog_pid in (None, str(os.getpid())):
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", "")) or None
        except ValueError:
            usec = None
    return SystemdEnvironment(
        notify_socket=os.environ.get("NOTIFY_SOCKET") or None, watchdog_usec=usec
    )
