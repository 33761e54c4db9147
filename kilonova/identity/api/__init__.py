"""The identity HTTP API: one module per resource, each with ``register(router)``."""
