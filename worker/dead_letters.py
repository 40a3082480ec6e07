"""``DeadLetters``'s earlier import path; it lives in ``worker.transport.dead_letters``."""

from worker.transport.dead_letters import DeadLetter, DeadLetters

__all__ = ["DeadLetter", "DeadLetters"]
