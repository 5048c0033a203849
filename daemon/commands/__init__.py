"""One-shot CLI commands that work on the database (``triaged jobs``, ``queues``, ...).

Each module exposes ``add_parsers(commands)``, which adds its subcommands and sets
``handler`` on each to an ``async def (args, pool) -> int`` returning the exit status;
``args.settings`` carries the validated settings (never read them again).
``daemon.cli`` opens the database (the embedded one too) around the handler.
"""
