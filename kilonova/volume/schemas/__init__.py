"""Cinder's request-body JSON Schemas, one module per resource, each constraint as upstream's
(cinder/api/schemas), written here; checked by kilonova/volume/validation.py."""
