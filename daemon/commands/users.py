"""``triaged user``: create users, list them, set a password, disable a user.

::

    triaged user create --email E --role admin|analyst|viewer [--name N] [--password-stdin]
    triaged user list [--json]
    triaged user set-password --email E --password-stdin
    triaged user disable --email E

Works before the server ever ran (the one-shot runner applies migrations first). The
password is read from stdin: the first line with ``--password-stdin`` (for scripts:
``printf '%s\\n' "$PW" | triaged user create ...``), else from the terminal without echo
(asked twice). It is never taken from the command line, echoed or logged.

Exit status: 0 done; 1 refused (password policy, duplicate email, unknown user, last
admin); 2 bad input (one ``error:`` line). Audit events of these commands have the actor
``system`` and the request id ``cli``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING

import trio

from daemon.modules.audit import AuditContext
from daemon.modules.auth import (
    AuthError,
    AuthPolicy,
    InvalidAccountData,
    Role,
    check_email,
    create_user,
    get_user_by_email,
    list_users,
    normalize_login_email,
    set_password,
    update_user,
)

if TYPE_CHECKING:
    from daemon.modules.auth import User
    from daemon.shared.db.pool import Pool

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
CLI_CONTEXT = AuditContext.system(request_id="cli")


class _BadInput(Exception):
    """Input the command cannot use: exit 2."""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``user`` and its actions ``create``, ``list``, ``set-password``, ``disable``."""
    user = commands.add_parser("user", help="create, list and disable users; set passwords")
    actions = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="create a user (the password is read from stdin, never from argv)"
    )
    create.add_argument("--email", required=True, type=_email)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", default="", help="display name")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else ask on the terminal)",
    )
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true", help="print JSON, not a table")
    listing.set_defaults(handler=_list)

    reset = actions.add_parser(
        "set-password", help="set a user's password (revokes their sessions)"
    )
    reset.add_argument("--email", required=True, type=_existing_email)
    reset.add_argument("--password-stdin", action="store_true", required=True)
    reset.set_defaults(handler=_set_password)

    disable = actions.add_parser("disable", help="disable a user (revokes their sessions)")
    disable.add_argument("--email", required=True, type=_existing_email)
    disable.set_defaults(handler=_disable)


def _email(text: str) -> str:
    """A new account's email: normalised, look-alikes refused (``check_email``)."""
    try:
        return check_email(text)
    except InvalidAccountData as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _existing_email(text: str) -> str:
    """An email to look an account up by: normalised, control and invisible characters
    refused, but not the rules of new addresses (an older account may break them)."""
    try:
        return normalize_login_email(text)
    except InvalidAccountData as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _policy(args: argparse.Namespace) -> AuthPolicy:
    policy: AuthPolicy = args.components.auth
    return policy


async def _read_password(from_stdin: bool) -> str:
    """The password: the first line of stdin, or typed twice without echo."""
    if from_stdin:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise _BadInput("no password on stdin")
        return password
    if not sys.stdin.isatty():
        raise _BadInput("stdin is not a terminal: pass --password-stdin")
    first = await trio.to_thread.run_sync(getpass.getpass, "Password: ")
    second = await trio.to_thread.run_sync(getpass.getpass, "Password (again): ")
    if first != second:
        raise _BadInput("the passwords differ")
    if not first:
        raise _BadInput("empty password")
    return first


def _fail(args: argparse.Namespace, status: int, message: str) -> int:
    print(f"triaged user {args.user_action}: error: {message}", file=sys.stderr)
    return status


async def _create(args: argparse.Namespace, pool: Pool) -> int:
    try:
        password = await _read_password(args.password_stdin)
        user = await create_user(
            pool,
            email=args.email,
            password=password,
            role=args.role,
            display_name=args.name,
            policy=_policy(args),
            context=CLI_CONTEXT,
        )
    except _BadInput as exc:
        return _fail(args, EXIT_USAGE, str(exc))
    except InvalidAccountData as exc:
        status = EXIT_USAGE if exc.field != "password" else EXIT_REFUSED
        return _fail(args, status, exc.message)
    except AuthError as exc:
        return _fail(args, EXIT_REFUSED, exc.message)
    print(f"user {user.email} created (id {user.id}, role {user.role.value})")
    return EXIT_OK


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    users: list[User] = []
    async with pool.connection() as conn:
        cursor: str | None = None
        while True:
            page = await list_users(conn, cursor=cursor, limit=1000)
            users.extend(page.items)
            if (cursor := page.next_cursor) is None:
                break
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": u.id,
                        "email": u.email,
                        "display_name": u.display_name,
                        "role": u.role.value,
                        "active": u.active,
                        "created_at": u.created_at.isoformat(),
                        "updated_at": u.updated_at.isoformat(),
                    }
                    for u in users
                ],
                indent=2,
            )
        )
    elif not users:
        print("no users")
    else:
        rows = [("ID", "EMAIL", "ROLE", "ACTIVE", "NAME")]
        rows += [
            (str(u.id), u.email, u.role.value, "yes" if u.active else "no", u.display_name)
            for u in users
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


async def _set_password(args: argparse.Namespace, pool: Pool) -> int:
    try:
        password = await _read_password(True)
        async with pool.connection() as conn:
            user = await get_user_by_email(conn, args.email)
        policy = _policy(args)
        revoked = await set_password(pool, user.id, password, policy=policy, context=CLI_CONTEXT)
    except _BadInput as exc:
        return _fail(args, EXIT_USAGE, str(exc))
    except AuthError as exc:
        return _fail(args, EXIT_REFUSED, exc.message)
    print(f"password of {user.email} changed; {revoked} session(s) revoked")
    return EXIT_OK


async def _disable(args: argparse.Namespace, pool: Pool) -> int:
    try:
        async with pool.connection() as conn:
            user = await get_user_by_email(conn, args.email)
        user = await update_user(pool, user.id, active=False, context=CLI_CONTEXT)
    except AuthError as exc:
        return _fail(args, EXIT_REFUSED, exc.message)
    print(f"user {user.email} disabled")
    return EXIT_OK
