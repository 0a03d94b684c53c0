"""Executors on job systems flaghooks does not own; each module needs its extra (``flaghooks[procrastinate]``)."""
