"""The command line: ``runworker`` and ``channel-worker``, options, the runner, the supervisor."""
