"""What the modules ask of a place to run CPU-bound work: ``await cpu.run(function, *args)``.

Two kinds, both built once per process by the composition root:

* :class:`daemon.shared.cpu_threads.CpuThreads`: low-priority threads, for work that
  releases the GIL while it runs (hashing big inputs, password hashing);
* :class:`daemon.shared.cpu_processes.CpuProcesses`: worker processes, for work that holds
  the GIL (parsing, normalizing and analysing text in Python and regular expressions).
  Its functions must be module-level and their arguments and results picklable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class CpuRunner(Protocol):
    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, run once off the event loop; its result or exception."""
        ...
