"""Small files named for what they do: no Python file under ``daemon/`` over 500 lines,
except the database adapter and pool, which stay one concept each."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500
ONE_CONCEPT_EACH = {"daemon/shared/db/pool.py", "daemon/shared/db/psycopg_trio.py"}


def test_no_file_in_the_daemon_is_over_the_limit():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "daemon").rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > LIMIT and name not in ONE_CONCEPT_EACH}
    assert over == {}, f"split these by concept: {over}"
