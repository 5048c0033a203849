"""Dependencies: every package ``daemon/`` imports is declared, and the lock files hold
every declared package (``make lock`` after a change of pyproject.toml)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _locked(path: Path) -> set[str]:
    names = re.findall(r"^([A-Za-z0-9._-]+)==", path.read_text(), re.MULTILINE)
    return {_name(n) for n in names}


def _top_level_imports() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "daemon").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"daemon", "__future__"}


def test_every_imported_package_is_declared():
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    distributions = packages_distributions()
    undeclared = {}
    for module in sorted(_top_level_imports()):
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(names)
    assert undeclared == {}, f"imported by daemon/ but not in [project] dependencies: {undeclared}"


def test_the_lock_files_hold_every_declared_package():
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert runtime - _locked(ROOT / "requirements.lock") == set(), "run `make lock`"
    assert (runtime | dev) - _locked(ROOT / "requirements-dev.lock") == set(), "run `make lock`"


def test_every_locked_package_is_pinned_with_hashes():
    for path in (ROOT / "requirements.lock", ROOT / "requirements-dev.lock"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
        for entry in entries:
            if entry.startswith("#") or not entry.strip():
                continue
            assert "==" in entry.split()[0] and "--hash=sha256:" in entry, entry[:80]
