"""A small Django project that the fault tests run ``runworker`` and ``channel-worker`` against."""
