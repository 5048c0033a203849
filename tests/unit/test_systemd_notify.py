from __future__ import annotations

import socket
from pathlib import Path

import trio

from daemon.shared.config import SystemdEnvironment
from daemon.shared.systemd_notify import Notifier


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address if not address.startswith("@") else "\0" + address[1:])
    sock.settimeout(2)
    return sock


async def test_ready_and_status_arrive_as_one_datagram(tmp_path: Path):
    address = str(tmp_path / "notify.sock")
    with _listener(address) as manager:
        notifier = Notifier(SystemdEnvironment(notify_socket=address, watchdog_usec=None))
        await notifier.notify(READY=1, STATUS="serving")
        assert manager.recv(4096) == b"READY=1\nSTATUS=serving"
        notifier.close()


async def test_abstract_socket_names_work():
    address = f"@triaged-test-{id(object())}"
    with _listener(address) as manager:
        notifier = Notifier(SystemdEnvironment(notify_socket=address, watchdog_usec=None))
        await notifier.notify(STOPPING=1)
        notifier.close()
        assert manager.recv(4096) == b"STOPPING=1"


async def test_watchdog_pings_at_half_the_timeout(tmp_path: Path, autojump_clock):
    address = str(tmp_path / "notify.sock")
    with _listener(address) as manager:
        manager.setblocking(False)
        notifier = Notifier(SystemdEnvironment(notify_socket=address, watchdog_usec=2_000_000))
        with trio.move_on_after(3.5):  # virtual time: pings at 0, 1, 2, 3
            await notifier.run_watchdog()
        notifier.close()
        pings = []
        while True:
            try:
                pings.append(manager.recv(64))
            except BlockingIOError:
                break
        assert pings == [b"WATCHDOG=1"] * 4


async def test_without_a_socket_nothing_happens():
    notifier = Notifier(SystemdEnvironment(notify_socket=None, watchdog_usec=None))
    assert not notifier.enabled
    await notifier.notify(READY=1)
    with trio.move_on_after(0.1) as scope:
        await notifier.run_watchdog()
    assert not scope.cancelled_caught  # returns at once when there is no watchdog


async def test_a_vanished_manager_does_not_break_the_service(tmp_path: Path):
    notifier = Notifier(
        SystemdEnvironment(notify_socket=str(tmp_path / "gone.sock"), watchdog_usec=None)
    )
    await notifier.notify(READY=1)  # logs a warning once, raises nothing
    await notifier.notify(READY=1)
    notifier.close()
