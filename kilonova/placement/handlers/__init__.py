"""One module per Placement resource; each defines ``register(router)``."""
