"""The run loop: lifecycle, listeners, prefetch, decoding, instances, settlement, lease upkeep."""
