"""Sending to worker channels: the send API, its connection pools, the known-channel check."""
