"""The error tree drawn in ``daemon/shared/errors.py`` names every error class triaged
defines, each under its real parent, and each class lives where the tree says."""

from __future__ import annotations

import importlib
import pkgutil
import re

import daemon
from daemon.shared import errors


def all_error_classes() -> set[type]:
    for module in pkgutil.walk_packages(daemon.__path__, "daemon."):
        importlib.import_module(module.name)
    found: set[type] = set()
    pending = [errors.DaemonError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("daemon.")}


def drawn_tree() -> dict[str, str | None]:
    """Class name -> parent name, read from the docstring's drawing."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(    (?:[│ ]   )*(?:[├└]── )?)([A-Z]\w+)(?:\s|$)", line)
        if not match:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_the_tree_names_every_error_under_its_parent():
    tree = drawn_tree()
    classes = {cls.__name__: cls for cls in all_error_classes()}
    assert sorted(set(classes) - set(tree)) == [], "error classes missing from the tree"
    assert sorted(set(tree) - set(classes)) == [], "the tree names classes that do not exist"
    for name, cls in classes.items():
        if name == "DaemonError":
            continue
        daemon_parents = [b.__name__ for b in cls.__bases__ if issubclass(b, errors.DaemonError)]
        assert tree[name] in daemon_parents, (name, tree[name], daemon_parents)


def test_module_errors_live_in_their_module():
    for cls in all_error_classes():
        if cls.__module__ == "daemon.shared.errors":
            continue
        assert cls.__module__.startswith(("daemon.modules.", "daemon.queue.")), cls
