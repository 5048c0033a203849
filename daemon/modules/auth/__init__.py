"""Authentication: users, passwords, login sessions, API keys, throttling, bootstrap.

Public face (``api/`` and the CLI import from here only)::

    from daemon.modules.auth import login, authenticate, logout, AuthPolicy, Role, ...

Who may call what (roles on routes) is the API layer's; this package holds the rules:
password policy and hashing, sessions and keys stored hashed, the last-admin rule,
brute-force throttling, and an audit event for every change, in the change's
transaction. Errors are the ``AuthError`` branch of :mod:`daemon.shared.errors`.
"""

from __future__ import annotations

from daemon.modules.auth.api_keys import (
    API_KEY_PREFIX,
    ApiKey,
    CreatedApiKey,
    create_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
)
from daemon.modules.auth.bootstrap import INITIAL_ADMIN_EMAIL, bootstrap_admin, initial_admin
from daemon.modules.auth.credential_cache import CredentialCache
from daemon.modules.auth.emails import check_email, normalize_email, normalize_login_email
from daemon.modules.auth.errors import (
    ApiKeyNotFound,
    AuthError,
    DuplicateEmail,
    InvalidAccountData,
    InvalidCredentials,
    LastAdmin,
    LoginThrottled,
    PermissionDenied,
    Unauthenticated,
    UserNotFound,
    WeakPassword,
)
from daemon.modules.auth.housekeeping import Pruned, prune
from daemon.modules.auth.passwords import check_password
from daemon.modules.auth.policy import AuthPolicy, ThrottlePolicy
from daemon.modules.auth.roles import Principal, PrincipalKind, Role
from daemon.modules.auth.schedules import PRUNE_QUEUE, SCHEDULES
from daemon.modules.auth.sessions import (
    SESSION_TOKEN_PREFIX,
    LoginResult,
    authenticate,
    change_own_password,
    login,
    logout,
)
from daemon.modules.auth.users import (
    User,
    create_user,
    delete_user,
    get_user,
    get_user_by_email,
    list_users,
    parse_role,
    set_password,
    update_user,
)

__all__ = [
    "API_KEY_PREFIX",
    "INITIAL_ADMIN_EMAIL",
    "PRUNE_QUEUE",
    "SCHEDULES",
    "SESSION_TOKEN_PREFIX",
    "ApiKey",
    "ApiKeyNotFound",
    "AuthError",
    "AuthPolicy",
    "CreatedApiKey",
    "CredentialCache",
    "DuplicateEmail",
    "InvalidAccountData",
    "InvalidCredentials",
    "LastAdmin",
    "LoginResult",
    "LoginThrottled",
    "PermissionDenied",
    "Principal",
    "PrincipalKind",
    "Pruned",
    "Role",
    "ThrottlePolicy",
    "Unauthenticated",
    "User",
    "UserNotFound",
    "WeakPassword",
    "authenticate",
    "bootstrap_admin",
    "change_own_password",
    "check_email",
    "check_password",
    "create_api_key",
    "create_user",
    "delete_user",
    "get_api_key",
    "get_user",
    "get_user_by_email",
    "initial_admin",
    "list_api_keys",
    "list_users",
    "login",
    "logout",
    "normalize_email",
    "normalize_login_email",
    "parse_role",
    "prune",
    "revoke_api_key",
    "set_password",
    "update_user",
]
