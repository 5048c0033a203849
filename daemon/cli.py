"""The ``triaged`` command line.

``serve`` (http + poller + scheduler), ``api`` (http only), ``worker`` (poller +
scheduler), ``migrate [--status]``, ``config check``, and the one-shot commands of
:mod:`daemon.commands` (``jobs``, ``queues``, ``schedules``, ``user``, ``analyze``,
``sources``, ``cases``, ``retention``, ``audit``).
Exit status 2 means the configuration or the command line is invalid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import trio

from daemon import __version__
from daemon.commands import analyze, cases, jobs, retention, schedules, sources, users
from daemon.composition import Components, compose
from daemon.shared.config import load_settings, read_systemd_environment
from daemon.shared.errors import ConfigError, DaemonError
from daemon.shared.exit_status import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from daemon.shared.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.shared.db.pool import Pool

log = logging.getLogger("triaged")

COMMAND_MODULES = (jobs, schedules, users, analyze, sources, cases, retention)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triaged",
        description="On-premise document triage service. Configured by TRIAGED_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"triaged {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the HTTP API, the job worker and the scheduler")
    commands.add_parser("api", help="run only the HTTP API")
    commands.add_parser("worker", help="run only the job worker and the scheduler")
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument("--status", action="store_true", help="list migrations, apply nothing")
    migrate.set_defaults(handler=_migrate, migrate_first=False)
    for module in COMMAND_MODULES:
        module.add_parsers(commands)
    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_commands.add_parser("check", help="validate and print the effective configuration")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        components = compose(load_settings())
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"triaged: configuration error: {problem}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    settings = components.settings
    if args.command == "config":
        sys.exit(_config_check(components))
    if getattr(args, "handler", None) is not None:
        # A one-shot command: its result goes to stdout, its log to stderr, and only
        # what needs attention is logged (unless debugging), so an error is one line.
        configure_logging(settings, stream=sys.stderr, quiet=True)
        sys.exit(trio.run(_one_shot, components, args))
    # The HTTP server, the worker and everything they import load only to serve: a
    # one-shot command starts a quarter of a second sooner without them.
    from daemon.supervisor import Role, Supervisor

    configure_logging(settings)
    role = {"serve": Role.SERVE, "api": Role.API, "worker": Role.WORKER}[args.command]
    supervisor = Supervisor(components, role, read_systemd_environment())
    sys.exit(trio.run(supervisor.run))


def _config_check(components: Components) -> int:
    print("configuration is valid; effective values:")
    for name, value in components.settings.public_view().items():
        print(f"  {name}={value}")
    if components.escalation.ladders:
        import json

        print("escalation policy:")
        print("  " + json.dumps(components.escalation.describe(), sort_keys=True))
    return EXIT_OK


async def _one_shot(components: Components, args: argparse.Namespace) -> int:
    """Run a command's handler with a pool on the configured (or embedded) database.

    The schema is brought up to date first unless the command says otherwise, so a
    command run before the first ``serve`` finds its tables; a command about schedules
    (``sync_schedules``) also syncs the built-in schedules this version declares. Other
    commands write nothing else: an older binary's ``triaged user ...`` must not retire
    the schedules a newer version declared.
    """
    from daemon.queue import sync_declared_schedules
    from daemon.shared.db import migrate
    from daemon.shared.db.database import database_url
    from daemon.shared.db.pool import open_pool
    from daemon.worker.housekeeping import declared_schedules

    settings = components.settings
    # The validated settings and the components built from them, for the handlers.
    args.settings = settings
    args.components = components
    try:
        if not getattr(args, "needs_database", True):
            status: int = await args.handler(args, None)
            return status
        async with (
            database_url(settings) as url,
            open_pool(
                url,
                min_size=1,
                max_size=2,
                acquire_timeout=settings.startup_timeout_seconds,
                connect_timeout=settings.db_connect_timeout_seconds,
            ) as pool,
        ):
            if getattr(args, "migrate_first", True):
                await migrate.apply(pool)
            if getattr(args, "sync_schedules", False):
                await sync_declared_schedules(pool, declared_schedules(components))
            status = await args.handler(args, pool)
            return status
    except DaemonError as exc:
        log.error("%s", exc.message, extra={"action": "cli.failed"})
        return EXIT_FAILURE


async def _migrate(args: argparse.Namespace, pool: Pool) -> int:
    from daemon.shared.db import migrate

    if args.status:
        for entry in await migrate.status(pool):
            applied_at = entry.applied_at
            when = applied_at.isoformat(timespec="seconds") if applied_at else "-"
            print(f"{entry.version:04d}  {entry.state:<8} {when:<26} {entry.name}")
        return EXIT_OK
    applied = await migrate.apply(pool)
    print(f"applied {len(applied)} migration(s); schema at version {migrate.latest_version()}")
    return EXIT_OK
