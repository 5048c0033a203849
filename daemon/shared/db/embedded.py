"""The embedded PostgreSQL: a private cluster under the data directory.

Uses the PostgreSQL binaries shipped in the ``pgserver`` wheel, but manages the cluster
itself (``initdb`` once, ``pg_ctl start``/``stop``) so that its lifetime is exactly the
lifetime of the owner: started before the pool opens, stopped after it closes. The server
listens on a Unix socket only, never on TCP.

All functions here block (they run ``pg_ctl``): call them through ``trio.to_thread``.
PostgreSQL refuses to run as root; when triaged runs as root, the cluster is owned by and
runs as the ``postgres`` system account if there is one, else ``nobody``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from daemon.shared.errors import EmbeddedDatabaseError

_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sockaddr_un.sun_path is 108 bytes on Linux, keep a margin
_START_TIMEOUT_SECONDS = 60
_STOP_TIMEOUT_SECONDS = 10
DATABASE_NAME = "triaged"


class OwnershipLock:
    """An ``flock`` on ``data_dir/postgres.lock``, held while this process owns the
    cluster; the kernel releases it if the process dies. ``release`` is idempotent."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True, kw_only=True)
class EmbeddedServer:
    """A running embedded cluster and how to reach it."""

    pgdata: Path
    socket_dir: Path
    run_as: str | None  # system account the server runs as (None: the current user)
    # The held ownership lock: this process stops the cluster on exit. None: another
    # live triaged process owns the cluster and will stop it.
    owner_lock: OwnershipLock | None = None

    @property
    def owned(self) -> bool:
        return self.owner_lock is not None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{DATABASE_NAME}?host={self.socket_dir}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"


def _bin(name: str) -> Path:
    # Locate pgserver's binaries without importing it: its __init__ starts a lock file
    # machinery and atexit hooks that this module replaces.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError("the pgserver package (embedded PostgreSQL) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
    if not path.exists():
        raise EmbeddedDatabaseError(f"the pgserver package has no {name} binary")
    return path


def _run_as_account() -> str | None:
    if os.geteuid() != 0:
        return None
    for account in ("postgres", "nobody"):
        try:
            pwd.getpwnam(account)
        except KeyError:
            continue
        return account
    raise EmbeddedDatabaseError("running as root and no 'postgres' or 'nobody' account exists")


def _socket_dir(pgdata: Path) -> Path:
    if len(str(pgdata / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"triaged-pg-{digest}"


def _run(args: list[str], *, run_as: str | None, timeout: float, log: Path | None = None) -> None:
    try:
        result = subprocess.run(
            args,
            user=run_as,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedDatabaseError(f"{Path(args[0]).name} timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise EmbeddedDatabaseError(f"cannot run {Path(args[0]).name}: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        if log is not None and log.exists():
            detail += log.read_text(errors="replace").strip().splitlines()[-5:]
        raise EmbeddedDatabaseError(f"{Path(args[0]).name} failed: {' | '.join(detail)}")


def _prepare_directory(pgdata: Path, run_as: str | None) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(pgdata, account.pw_uid, account.pw_gid)
        # The server account must be able to reach the directory through its parents.
        for parent in pgdata.parents:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)
    pgdata.chmod(0o700)


def server_for(data_dir: Path) -> EmbeddedServer:
    """The embedded cluster of ``data_dir`` (which may not exist or run yet)."""
    pgdata = (data_dir / "postgres").resolve()
    return EmbeddedServer(pgdata=pgdata, socket_dir=_socket_dir(pgdata), run_as=_run_as_account())


def start(data_dir: Path) -> EmbeddedServer:
    """Start (initialising on first use) the cluster at ``data_dir/postgres``.

    Ownership: the process that holds ``data_dir/postgres.lock`` (an ``flock``, released
    by the kernel when the process dies) owns the cluster and stops it on exit; the
    result then has ``owned``. A cluster left running by a killed owner is taken over
    by the next process. A process that finds the lock held (a ``triaged jobs list``
    beside a running service) uses the running cluster and leaves it alone. Creates the
    ``triaged`` database if missing.

    Raises:
        EmbeddedDatabaseError: initdb or the server failed; the message carries the
            last lines of its log.
    """
    server = server_for(data_dir)
    pgdata, run_as = server.pgdata, server.run_as
    _prepare_directory(pgdata, run_as)
    lock = _try_ownership(data_dir)
    if lock is None:
        if not is_running(server):
            raise EmbeddedDatabaseError(
                f"the embedded PostgreSQL in {pgdata} belongs to another triaged process "
                "that has not started it (yet); try again once that process runs"
            )
        _ensure_database(server)
        return server
    server = replace(server, owner_lock=lock)
    try:
        _start_owned(server)
    except BaseException:
        lock.release()
        raise
    return server


def _start_owned(server: EmbeddedServer) -> None:
    pgdata, run_as, socket_dir = server.pgdata, server.run_as, server.socket_dir
    if not (pgdata / "PG_VERSION").exists():
        _run(
            [
                str(_bin("initdb")),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            run_as=run_as,
            timeout=_START_TIMEOUT_SECONDS,
        )
    _prepare_socket_dir(socket_dir, pgdata, run_as)
    if not is_running(server):
        log = pgdata / "server.log"
        options = f"-c listen_addresses='' -k {socket_dir} -c unix_socket_permissions=0777"
        _run(
            [
                str(_bin("pg_ctl")),
                "-D",
                str(pgdata),
                "-l",
                str(log),
                "-w",
                "-t",
                str(_START_TIMEOUT_SECONDS),
                "-o",
                options,
                "start",
            ],
            run_as=run_as,
            timeout=_START_TIMEOUT_SECONDS + 5,
            log=log,
        )
    _ensure_database(server)


def _try_ownership(data_dir: Path) -> OwnershipLock | None:
    """The cluster's ownership lock, or None if another live process holds it."""
    path = data_dir.resolve() / "postgres.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return OwnershipLock(fd)


def _prepare_socket_dir(socket_dir: Path, pgdata: Path, run_as: str | None) -> None:
    """Create the socket directory; refuse a fallback directory someone else prepared.

    The server trusts every local connection that reaches its socket, so the directory
    holding it must be private: owned by the server's account, mode 0700.
    """
    uid = pwd.getpwnam(run_as).pw_uid if run_as is not None else os.geteuid()
    if socket_dir != pgdata and socket_dir.exists():
        info = socket_dir.lstat()
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid not in (uid, os.geteuid())
            or (info.st_mode & 0o077)
        ):
            raise EmbeddedDatabaseError(
                f"refusing the socket directory {socket_dir}: it exists and is not a "
                "private directory of this service; remove it, or use a shorter "
                "TRIAGED_DATA_DIR so the socket lives in the data directory"
            )
    socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(socket_dir, account.pw_uid, account.pw_gid)


def is_running(server: EmbeddedServer) -> bool:
    """Whether a postmaster is running on the cluster's data directory."""
    if not (server.pgdata / "PG_VERSION").exists():
        return False
    result = subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(server.pgdata), "status"],
        user=server.run_as,
        capture_output=True,
        check=False,
        cwd="/",
    )
    return result.returncode == 0


def stop(server: EmbeddedServer) -> None:
    """Stop the cluster (fast mode: sessions are disconnected, data is flushed), then
    release the ownership lock if held.

    Idempotent: stopping a stopped cluster does nothing.
    """
    try:
        if is_running(server):
            _pg_ctl_stop(server)
    finally:
        if server.owner_lock is not None:
            server.owner_lock.release()


def _pg_ctl_stop(server: EmbeddedServer) -> None:
    _run(
        [
            str(_bin("pg_ctl")),
            "-D",
            str(server.pgdata),
            "-w",
            "-t",
            str(_STOP_TIMEOUT_SECONDS),
            "-m",
            "fast",
            "stop",
        ],
        run_as=server.run_as,
        timeout=_STOP_TIMEOUT_SECONDS + 5,
    )


def _ensure_database(server: EmbeddedServer) -> None:
    import psycopg

    with psycopg.connect(server.admin_url(), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
