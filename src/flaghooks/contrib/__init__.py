"""Delivery on existing job systems: :mod:`flaghooks.contrib.procrastinate` and :mod:`flaghooks.contrib.celery`."""
