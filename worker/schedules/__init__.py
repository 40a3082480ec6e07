"""Periodic schedules: their definitions in settings, their ticks, and the loop that fires each."""
