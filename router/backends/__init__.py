"""Backends: one small async contract (complete, stream, aclose) over every kind of tier."""
