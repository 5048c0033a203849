"""The package boundaries of DESIGN.md, checked on the source so they stay true.

- Business modules (``daemon/modules``) and the queue engine (``daemon/queue``) depend
  on nothing that wires the process: not the adapters (``daemon.api``,
  ``daemon.worker``), not the settings (``daemon.shared.config``), not the composition
  root, the supervisor or the command line. They get typed configuration passed in.
- The queue engine knows nothing of documents: it imports no business module.
- Code outside a module uses its package face (``daemon.modules.cases``), never its
  private submodules (``daemon.modules.cases.store``); tests may reach inside.

Imports are read with ``ast`` (those under ``if TYPE_CHECKING:`` and inside functions
count too: a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ROOT / "daemon"

WIRING = (
    "daemon.api",
    "daemon.worker",
    "daemon.shared.config",
    "daemon.composition",
    "daemon.supervisor",
    "daemon.cli",
    "daemon.commands",
)


def imports_of(path: Path, source: str) -> list[tuple[int, str]]:
    """Every module ``source`` (the text of ``path``) imports (``from x import y`` gives
    ``x.y`` too, since ``y`` may be a submodule), with its line."""
    tree = ast.parse(source, filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def package_of(name: str) -> str | None:
    """The module package a dotted name belongs to (``daemon.modules.cases``,
    ``daemon.queue``), or None."""
    parts = name.split(".")
    if parts[:2] == ["daemon", "modules"] and len(parts) >= 3:
        return ".".join(parts[:3])
    if parts[:2] == ["daemon", "queue"]:
        return "daemon.queue"
    return None


def boundary_violations(files: dict[Path, str]) -> list[str]:
    """What breaks the rules in ``files`` (path -> source text)."""
    problems = []
    for path, text in files.items():
        own = package_of(module_name(path))
        for line, target in imports_of(path, text):
            where = f"{path.relative_to(ROOT)}:{line}"
            if own is not None:
                for wiring in WIRING:
                    if within(target, wiring):
                        problems.append(f"{where}: {own} imports {target} (wiring)")
                if own == "daemon.queue" and within(target, "daemon.modules"):
                    problems.append(f"{where}: the queue imports {target} (a business module)")
            target_package = package_of(target)
            if (
                target_package is not None
                and target_package != own
                and target != target_package
                and _is_submodule(target)
                and not _face_exports(target)
            ):
                problems.append(f"{where}: imports {target}: use the face {target_package} instead")
    return sorted(set(problems))


def _face_exports(name: str) -> bool:
    """Whether ``name`` (``package.attr``) is bound by the package's ``__init__`` (a
    function named like a submodule, such as ``daemon.queue.enqueue``, is the face's)."""
    package, _, attribute = name.rpartition(".")
    init = ROOT / Path(*package.split(".")) / "__init__.py"
    if not init.is_file():
        return False
    tree = ast.parse(init.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            bound = {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound = {node.name}
        elif isinstance(node, ast.Assign):
            bound = {t.id for t in node.targets if isinstance(t, ast.Name)}
        else:
            continue
        if attribute in bound:
            return True
    return False


def _is_submodule(name: str) -> bool:
    """Whether ``name`` is a module file or package under daemon/ (not a name defined
    in a package's ``__init__``)."""
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative).is_dir()


def daemon_files() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(DAEMON.rglob("*.py"))}


def test_the_daemon_keeps_its_boundaries():
    assert boundary_violations(daemon_files()) == []


@pytest.mark.parametrize(
    ("where", "source", "fragment"),
    [
        ("modules/cases/leak.py", "from daemon.shared.config import Settings\n", "(wiring)"),
        ("modules/audit/leak.py", "import daemon.api.errors\n", "(wiring)"),
        ("queue/leak.py", "from daemon.worker import handlers\n", "(wiring)"),
        ("queue/leak.py", "from daemon.modules.ingestion import Pipeline\n", "business module"),
        (
            "modules/auth/leak.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from daemon.composition import Components\n",
            "(wiring)",
        ),
        ("api/leak.py", "from daemon.modules.cases.store import get_case\n", "use the face"),
        ("worker/leak.py", "from daemon.modules.cases import store\n", "use the face"),
    ],
)
def test_a_deliberate_violation_is_caught(where, source, fragment):
    """Each rule fails on a file that breaks it (a source text given for a path that
    does not exist: the real tree is never touched)."""
    path = DAEMON / where
    assert not path.exists()
    problems = boundary_violations({path: source})
    assert problems and all(fragment in p for p in problems), problems
