"""``triaged jobs`` and ``triaged queues``: inspect and operate the job queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``jobs`` and ``queues`` (being written)."""
