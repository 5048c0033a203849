"""PostgreSQL on Trio: the psycopg adapter and the connection pool.

Public face of the package::

    from daemon.shared.db import Pool, PoolStats, TrioConnection, open_pool

The embedded server (:mod:`daemon.shared.db.embedded`) and the migrations stay modules of
their own. Importing this package has no side effects.
"""

from __future__ import annotations

from daemon.shared.db.pool import Pool, PoolStats, open_pool
from daemon.shared.db.psycopg_trio import TrioConnection

__all__ = ["Pool", "PoolStats", "TrioConnection", "open_pool"]
