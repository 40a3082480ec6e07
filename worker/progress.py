"""``Progress``'s earlier import path; it lives in ``worker.tasks.progress``."""

from worker.tasks.progress import Progress, progress_group

__all__ = ["Progress", "progress_group"]
