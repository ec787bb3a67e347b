"""Experiments that drive the whole pipeline: the demo (and, next, the frontier sweep)."""
