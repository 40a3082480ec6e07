"""A small Django project for the operations tests (health, metrics, status, logs, reload).

It imports itself relatively, so a copy under another name works too (the reload test runs one).
"""
