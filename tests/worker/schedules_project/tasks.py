"""A task on the slow backend, for the test that kills a worker between claim and send."""

from __future__ import annotations

from worker.tasks.compat import task


@task(backend="slow", queue_name="slow")
def tick() -> None:
    """Does nothing: the test counts the results its schedule enqueued."""
