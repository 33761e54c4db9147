"""The identity service: a Keystone v3 API (tokens, projects, users, roles, catalog)."""
