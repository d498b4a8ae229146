"""User-facing errors: one line that says what, where, and what to do."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or unreadable input. The CLI prints ``kgcurate: error: <message>`` and exits 2."""


class ConcurrentRunError(UserError):
    """Another run changed the same table at the same time; this one was rolled back."""
