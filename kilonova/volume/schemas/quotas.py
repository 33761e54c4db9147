"""``PUT /os-quota-sets/{project}``: the keys and their values are checked by the ``quota_set`` format
(kilonova/volume/validation.py), as Cinder does."""
from __future__ import annotations

from kilonova.volume.schemas import parameters as P

UPDATE = P.body("quota_set", {"type": "object", "minProperties": 1, "format": "quota_set"})

# What a quota set may name (the service's defaults, kilonova/volume/service.py QUOTA_OPTIONS), and the keys
# a quota set may carry beside them.
RESOURCES = frozenset(("volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes", "groups",
                       "per_volume_gigabytes"))
NOT_QUOTAS = frozenset(("tenant_id", "id"))
