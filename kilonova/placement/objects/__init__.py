"""Placement's data layer: plain synchronous SQLAlchemy functions taking a ``Session``.

Handlers run them through ``Database.read``/``Database.write`` (one transaction each).
Domain errors are the exceptions of ``kilonova.placement.objects.exceptions``.
"""
