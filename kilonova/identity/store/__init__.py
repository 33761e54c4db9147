"""The identity data layer: synchronous functions taking a Session, one module per table group.

They raise ``kilonova.common.db.NotFound``/``Conflict`` with Keystone's messages;
the API layer turns those into 404/409.
"""
import uuid


def new_id() -> str:
    return uuid.uuid4().hex


class NotAllowed(Exception):
    """A request Keystone refuses with 403 (e.g. deleting an enabled domain)."""
