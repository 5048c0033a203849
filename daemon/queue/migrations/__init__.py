"""The queue's schema: numbered, forward-only SQL migrations shipped by :mod:`daemon.queue`.

They share one version sequence with :mod:`daemon.migrations` (the runner,
:mod:`daemon.shared.db.migrate`, discovers both packages and refuses a version used
twice). 0002 and 0005 were moved here unchanged: same numbers, same bytes, same
checksums, so a database migrated before the move stays valid.
"""
