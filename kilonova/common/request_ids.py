"""The request ids of the work in hand, as oslo.middleware's request_id and oslo.context keep them.

Every API request gets a local id ``req-<uuid>`` (answered as ``x-openstack-request-id``). A caller's
``X-OpenStack-Request-ID`` in the ``req-<uuid>`` form is kept as the *global* request id (anything else
is ignored, as upstream). Both live in a context variable for the time the request is handled, with the
user and project once the token is known; they travel with every call to another service (its
``X-OpenStack-Request-ID`` is the global id, else the local one, as Nova sends it) and with every RPC
message, whose handler runs under the same ids. Log records read them from here (``kilonova.common.logs``).
"""
from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass

HEADER = "X-OpenStack-Request-ID"
_VALID = re.compile(r"^req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")


@dataclass
class RequestIds:
    request_id: str
    global_request_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None

    @property
    def outgoing(self) -> str:
        """The id another service is given: the global one when there is one, else this request's."""
        return self.global_request_id or self.request_id

    def to_rpc(self) -> dict:
        return {"request_id": self.request_id, "global_request_id": self.global_request_id,
                "user_id": self.user_id, "project_id": self.project_id}


_current: contextvars.ContextVar[RequestIds | None] = contextvars.ContextVar("kilonova_request_ids", default=None)


def generate() -> str:
    return "req-" + str(uuid.uuid4())


def valid(value: str | None) -> bool:
    return bool(value) and _VALID.match(value) is not None


def current() -> RequestIds | None:
    return _current.get()


def for_request(incoming: str | None) -> RequestIds:
    """New ids for an API request; ``incoming`` (the caller's header) kept as the global id when valid."""
    return RequestIds(generate(), incoming if incoming is not None and valid(incoming) else None)


def bind(ids: RequestIds | None) -> contextvars.Token:
    return _current.set(ids)


def reset(token: contextvars.Token) -> None:
    _current.reset(token)


def set_user(user_id: str | None, project_id: str | None) -> None:
    ids = _current.get()
    if ids is not None:
        ids.user_id, ids.project_id = user_id, project_id


def outgoing_header() -> str | None:
    ids = _current.get()
    return None if ids is None else ids.outgoing


def rpc_context() -> dict | None:
    """What an RPC message carries of the work that sends it (None outside any request)."""
    ids = _current.get()
    return None if ids is None else ids.to_rpc()


def from_rpc(values: dict | None) -> RequestIds | None:
    """The ids an RPC message carried (None when it carried none, or nothing usable)."""
    if not isinstance(values, dict) or not isinstance(values.get("request_id"), str):
        return None
    text = lambda key: values.get(key) if isinstance(values.get(key), str) else None  # noqa: E731
    return RequestIds(values["request_id"], text("global_request_id"), text("user_id"), text("project_id"))
