"""The identity data layer: synchronous functions taking a Session, one module per table group.

They raise ``kilonova.common.db.NotFound``/``Conflict`` with Keystone's messages;
the API layer turns those into 404/409.
"""
import uuid


def new_id() -> str:
    return uuid.uuid4().hex


def check_immutable(kind: str, current: object, values: dict, fields: tuple[str, ...]) -> None:
    """Keystone refuses to change ids and ownership in an update (400)."""
    for name in fields:
        if name in values and values[name] != getattr(current, name):
            raise Invalid(f"Update of `{name}` of {kind} {getattr(current, 'id')} is not allowed.")


class Invalid(Exception):
    """A request Keystone refuses with 400 (e.g. changing a project's domain)."""


class NotAllowed(Exception):
    """A request Keystone refuses with 403 (e.g. deleting an enabled domain)."""
