"""The pytest plugin's earlier path; ``pytest_plugins = ["worker.testing.pytest_plugin"]``."""

from worker.testing.pytest_plugin import channel_worker

__all__ = ["channel_worker"]
