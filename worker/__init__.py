"""A concurrent, at-least-once worker for channels named on a Channels layer."""
