"""Test aids: ``drain`` queued messages through the real worker, and the pytest plugin."""

from worker.testing.drain import drain, drain_sync

__all__ = ["drain", "drain_sync"]
