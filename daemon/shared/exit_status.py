"""The exit statuses of a ``triaged`` process (systemd and the CLI's callers read them).

``EXIT_CONFIG`` (2) is the status systemd's ``RestartPreventExitStatus=2`` names: a
configuration or command line that cannot work is not retried. A process ended by a
second signal exits 128 plus its number (see :mod:`daemon.supervisor`).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
