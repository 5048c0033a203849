"""Business modules (auth, audit, and later sources, ingestion, cases, ...).

Each ``modules/<domain>/__init__.py`` is the public face of its domain; ``api/`` and
``worker/`` call these, never the other way round.
"""
