"""``python -m daemon``: the same as the ``triaged`` command."""

from daemon.cli import main

if __name__ == "__main__":
    main()
