"""triaged: on-premise document triage service."""

__version__ = "0.1.0"
