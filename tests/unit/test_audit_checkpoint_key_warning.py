"""While no checkpoint key is configured, the purge and ``triaged audit verify`` warn that
checkpoints are signed with a key stored in the same database (forgeable by a writer)."""

from __future__ import annotations

from daemon.modules.audit import checkpoint_key_warning


def test_an_unset_key_is_warned_about_and_a_configured_one_is_not():
    warning = checkpoint_key_warning(None)
    assert warning is not None
    assert "TRIAGED_AUDIT_CHECKPOINT_KEY is not set" in warning
    assert "same database" in warning
    assert checkpoint_key_warning(b"a key of some good length") is None
