"""A small Django project that the process tests run ``runworker`` and ``manage.py`` against."""
