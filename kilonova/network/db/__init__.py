"""The network data layer: one module per table group; rows leave as dicts."""
