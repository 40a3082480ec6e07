"""The Django admin's worker section: channels, workers, dead letters and task results, live."""
