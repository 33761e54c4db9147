"""Block storage: Cinder's v3 API (volumes, volume types, quotas, limits) over file-backed volumes."""
