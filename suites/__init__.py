"""Evaluation suites shipped with cfa (read with importlib.resources)."""
