"""Emails are normalised wherever they enter (issue 12, defect 7): the API, the CLI, the
bootstrap admin, the login lookup and its throttle; look-alikes are refused with a 422
naming the field; addresses stored before are brought to the normal form by a migration."""

from __future__ import annotations

import argparse

import pytest

from daemon.commands.users import add_parsers
from daemon.composition import auth_policy
from daemon.modules.audit import AuditContext
from daemon.modules.auth import (
    AuthPolicy,
    DuplicateEmail,
    InvalidAccountData,
    LoginThrottled,
    Role,
    ThrottlePolicy,
    bootstrap_admin,
    create_user,
    get_user_by_email,
    login,
)
from daemon.shared.config import Settings
from daemon.shared.db import migrate, open_pool
from tests.integration.api_server import PASSWORD

FAST = AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1)
SYSTEM = AuditContext.system(request_id="test")
COMPOSED = "jos\u00e9@example.org"  # é as one character


def wide(text: str) -> str:
    """``text`` in fullwidth forms (what NFKC maps back to ASCII)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


LOOK_ALIKES = {
    "fullwidth": (
        wide("jos") + "é@" + wide("example") + "." + wide("org"),
        None,
    ),  # the same address: 409
    "combining accent": ("jose\u0301@example.org", None),  # the same address: 409
    "cyrillic": ("jos\u0435@example.org", "mixes"),  # Cyrillic e
    "zero-width": ("jo\u200bs\u00e9@example.org", "U+200B"),
    "bidi": ("\u202ejos\u00e9@example.org", "U+202E"),
    "ansi escape": ("\x1b[1mjos\u00e9@example.org", "U+001B"),
    "line separator": ("jos\u00e9\u2028@example.org", "U+2028"),
}


@pytest.mark.parametrize("kind", sorted(LOOK_ALIKES))
async def test_look_alikes_of_an_account_are_refused_over_http(api, kind):
    admin = await api.token(Role.ADMIN)
    typed, refusal = LOOK_ALIKES[kind]
    async with api.client(headers={"Authorization": f"Bearer {admin}"}) as client:
        first = await client.post(
            "/api/v1/users", json={"email": COMPOSED, "password": PASSWORD, "role": "viewer"}
        )
        assert first.status_code == 201 and first.json()["email"] == COMPOSED
        again = await client.post(
            "/api/v1/users", json={"email": typed, "password": PASSWORD, "role": "viewer"}
        )
        listed = (await client.get("/api/v1/users")).json()["items"]
    if refusal is None:
        assert again.status_code == 409, again.text
    else:
        assert again.status_code == 422, again.text
        assert again.headers["content-type"] == "application/problem+json"
        errors = again.json()["errors"]
        assert errors[0]["field"] == "email" and refusal in errors[0]["message"]
    assert [u["email"] for u in listed].count(COMPOSED) == 1
    assert len(listed) == 2  # the admin and josé: no second josé


async def test_login_finds_the_account_by_any_spelling(api):
    await api.user(Role.VIEWER, email=COMPOSED)
    async with api.client() as client:
        for spelling in (
            COMPOSED,
            "jose\u0301@example.org",
            wide("jos") + "é@" + wide("example") + "." + wide("org"),
        ):
            response = await client.post(
                "/api/v1/auth/login", json={"email": spelling, "password": PASSWORD}
            )
            assert response.status_code == 200, (spelling, response.text)
            assert response.json()["user"]["email"] == COMPOSED
        hidden = await client.post(
            "/api/v1/auth/login",
            json={"email": "jo\u200bs\u00e9@example.org", "password": PASSWORD},
        )
    assert hidden.status_code == 422 and hidden.json()["errors"][0]["field"] == "email"
    async with api.pool.connection() as conn:
        assert (await get_user_by_email(conn, wide("jos") + "é@example.org")).email == COMPOSED
        rows = await (await conn.execute("SELECT count(*) FROM login_throttle")).fetchone()
    assert rows[0] == 0  # the refused login was not even counted


async def test_spellings_of_an_email_share_one_throttle_counter(pool):
    rules = AuthPolicy(
        hash_time_cost=1,
        hash_memory_kib=8192,
        hash_parallelism=1,
        account_throttle=ThrottlePolicy(free_failures=2, lock_failures=2, lock_seconds=60),
    )
    for spelling in ("jose\u0301@example.org", wide("jos") + "é@example.org"):
        with pytest.raises(Exception, match=r"(?i)invalid"):
            await login(pool, spelling, "wrong password!", policy=rules, client_addr=None,
                        request_id=None)  # fmt: skip
    with pytest.raises(LoginThrottled):
        await login(pool, COMPOSED, "wrong password!", policy=rules, client_addr=None,
                    request_id=None)  # fmt: skip


async def test_module_calls_normalise_and_refuse_too(pool):
    user = await create_user(
        pool, email=" " + wide("ANA") + "@example.org ", password=PASSWORD, role=Role.VIEWER,
        policy=FAST, context=SYSTEM,
    )  # fmt: skip
    assert user.email == "ANA@example.org"
    with pytest.raises(DuplicateEmail):
        await create_user(pool, email="ana@example.org", password=PASSWORD, role=Role.VIEWER,
                          policy=FAST, context=SYSTEM)  # fmt: skip
    with pytest.raises(InvalidAccountData) as caught:
        await create_user(pool, email="an\u0430@example.org", password=PASSWORD,
                          role=Role.VIEWER, policy=FAST, context=SYSTEM)  # fmt: skip
    assert caught.value.field == "email"


def bootstrap_settings(email: str) -> Settings:
    return Settings(
        bootstrap_admin_email=email,
        bootstrap_admin_password="bootstrap secret passphrase",
        auth_hash_time_cost=1,
        auth_hash_memory_kib=8192,
        auth_hash_parallelism=1,
    )


async def bootstrap(pool, settings: Settings):
    """The supervisor's call with what ``settings`` configure."""
    password = settings.bootstrap_admin_password
    assert password is not None
    return await bootstrap_admin(
        pool, settings.bootstrap_admin_email, password.get_secret_value(), auth_policy(settings)
    )


async def test_the_bootstrap_admin_goes_through_the_same_rules(pool):
    with pytest.raises(InvalidAccountData) as caught:
        await bootstrap(pool, bootstrap_settings("ro\u200bot@example.org"))
    assert caught.value.field == "email" and "U+200B" in caught.value.message
    admin = await bootstrap(pool, bootstrap_settings(wide("root") + "@example.org"))
    assert admin is not None and admin.email == "root@example.org"


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["user", *argv])


def test_the_cli_normalises_and_refuses_too(capsys):
    assert cli_args("create", "--email", wide("v") + "@example.org", "--role", "viewer").email == (
        "v@example.org"
    )
    for argv in (
        ("create", "--email", "v\u202e@example.org", "--role", "viewer"),
        ("disable", "--email", "v\u202e@example.org"),
        ("set-password", "--email", "v\u202e@example.org", "--password-stdin"),
    ):
        with pytest.raises(SystemExit):
            cli_args(*argv)
        assert "U+202E" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_args("create", "--email", "v\u0430x@example.org", "--role", "viewer")
    assert "mixes" in capsys.readouterr().err
    # A lookup refuses no address an older account may have: it finds it or nobody.
    assert cli_args("disable", "--email", " v\u0430x@example.org").email == "v\u0430x@example.org"


async def test_the_migration_normalises_stored_emails(database_url):
    shipped = migrate.discover()
    normalising = next(m for m in shipped if m.name == "nfkc_emails")
    async with open_pool(database_url) as pool:
        await migrate.apply(pool, [m for m in shipped if m.version < normalising.version])
        async with pool.transaction() as conn:
            for email in (
                wide("full") + "@example.org",  # -> full@example.org
                "jose\u0301@example.org",  # -> josé
                wide("Bob") + "@example.org",  # -> Bob@, but bob@ exists (ignoring case): stays
                "bob@example.org",
                wide("carol") + "@example.org",  # these two would both become carol@: both stay
                wide("caro") + "l@example.org",
                "plain@example.org",
            ):
                await conn.execute(
                    "INSERT INTO users (email, role, password_hash) VALUES (%s, 'viewer', 'x')",
                    (email,),
                )
        await migrate.apply(pool)
        async with pool.connection() as conn:
            rows = await (await conn.execute("SELECT email FROM users ORDER BY id")).fetchall()
            audited = await (
                await conn.execute(
                    "SELECT target_id, details FROM audit_events"
                    " WHERE action = 'user.email_normalized' ORDER BY target_id"
                )
            ).fetchall()
    assert audited == [
        ("1", {"email": [wide("full") + "@example.org", "full@example.org"]}),
        ("2", {"email": ["jose\u0301@example.org", COMPOSED]}),
    ]
    assert [r[0] for r in rows] == [
        "full@example.org",
        COMPOSED,
        wide("Bob") + "@example.org",
        "bob@example.org",
        wide("carol") + "@example.org",
        wide("caro") + "l@example.org",
        "plain@example.org",
    ]
