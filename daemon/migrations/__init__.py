"""Numbered, forward-only SQL migrations: ``NNNN_description.sql``.

Applied in order by :mod:`daemon.shared.db.migrate`; an applied file must never change
(its checksum is recorded). To change the schema, add the next number.
"""
