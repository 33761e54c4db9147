"""The volume service (Cinder v3) as the compute services call it, as upstream Nova's ``volume/cinder.py``.

The compute API calls it with the caller's token (so another project's volume is a 404 to it, as upstream);
the compute agents and the conductor as the service user, an admin who reaches every project's volumes and
attachments by their ids. The attachments API (3.27, ``os-complete`` 3.44) is the only way a volume is
attached: create (reserve the volume for the server), update with the host's connector (the volume service
answers the ``connection_info`` the driver attaches), complete (``in-use``), delete (detached, ``available``).
"""
from __future__ import annotations

from typing import Any

import httpx

from kilonova.common.clients import segment

ATTACHMENTS_VERSION = {"OpenStack-API-Version": "volume 3.44"}


class VolumeError(Exception):
    """An answer of the volume service that is not what was asked: its status and Cinder's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class VolumeNotFound(VolumeError):
    pass


def cinder_message(response: httpx.Response) -> str:
    """The message of a Cinder fault body (``{"badRequest": {"message": ...}}``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
    return response.text[:200]


class VolumeAPI:
    """Calls on one project's URL (``/v3/{project}``) with a client that adds its own token, or ``headers``."""

    def __init__(self, client, project_id: str, headers: dict[str, str] | None = None):
        self._client = client
        self._base = f"/v3/{segment(project_id)}"
        self._headers = headers or {}

    async def _call(self, method: str, path: str, ok: tuple[int, ...], json: Any = None,
                    version: dict[str, str] | None = None, what: str = "",
                    params: dict[str, str] | None = None) -> httpx.Response:
        headers = {**self._headers, **(version or {})}
        kwargs: dict[str, Any] = {"json": json} if json is not None else {}
        if params:
            kwargs["params"] = params
        try:
            response = await self._client.request(method, self._base + path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise VolumeError(503, f"The volume service could not be reached: {exc}") from None
        if response.status_code in ok:
            return response
        message = cinder_message(response)
        if response.status_code == 404:
            raise VolumeNotFound(404, message or f"{what} could not be found.")
        raise VolumeError(response.status_code, message)

    async def get(self, volume_id: str) -> dict[str, Any]:
        response = await self._call("GET", f"/volumes/{segment(volume_id)}", (200,),
                                    what=f"Volume {volume_id}")
        return response.json()["volume"]

    async def create(self, size: int, name: str = "", image_id: str | None = None, snapshot_id: str | None = None,
                     availability_zone: str | None = None, volume_type: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if size:  # none from a snapshot: the snapshot's size
            body["size"] = size
        if image_id:
            body["imageRef"] = image_id
        if snapshot_id:
            body["snapshot_id"] = snapshot_id
        if availability_zone:
            body["availability_zone"] = availability_zone
        if volume_type:
            body["volume_type"] = volume_type
        response = await self._call("POST", "/volumes", (200, 202), json={"volume": body})
        return response.json()["volume"]

    async def create_snapshot(self, volume_id: str, name: str, force: bool = True) -> dict[str, Any]:
        response = await self._call("POST", "/snapshots", (200, 202), json={"snapshot": {
            "volume_id": volume_id, "name": name, "force": force}}, what=f"Volume {volume_id}")
        return response.json()["snapshot"]

    async def update_snapshot_status(self, snapshot_id: str, status: str, progress: str | None = None) -> None:
        """``os-update_snapshot_status``: how an assisted snapshot went on the host (Nova's report to Cinder)."""
        body: dict[str, Any] = {"status": status}
        if progress:
            body["progress"] = progress
        await self._call("POST", f"/snapshots/{segment(snapshot_id)}/action", (200, 202, 204),
                         json={"os-update_snapshot_status": body}, what=f"Snapshot {snapshot_id}")

    async def extend_volume_completion(self, volume_id: str, error: bool) -> None:
        """3.71 ``os-extend_volume_completion``: how the extend of an attached volume went on its host."""
        await self._call("POST", f"/volumes/{segment(volume_id)}/action", (202,),
                         json={"os-extend_volume_completion": {"error": error}},
                         version={"OpenStack-API-Version": "volume 3.71"}, what=f"Volume {volume_id}")

    async def delete(self, volume_id: str) -> None:
        try:
            await self._call("DELETE", f"/volumes/{segment(volume_id)}", (202, 204))
        except VolumeNotFound:
            pass

    async def attachment_create(self, volume_id: str, instance_uuid: str,
                                connector: dict | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"volume_uuid": volume_id, "instance_uuid": instance_uuid}
        if connector is not None:
            body["connector"] = connector
        response = await self._call("POST", "/attachments", (200, 202), json={"attachment": body},
                                    version=ATTACHMENTS_VERSION, what=f"Volume {volume_id}")
        return response.json()["attachment"]

    async def attachments_of(self, volume_id: str, instance_uuid: str) -> list[dict[str, Any]]:
        """A server's attachments of a volume, whatever their state (all projects: the service's view)."""
        response = await self._call("GET", "/attachments", (200,), version=ATTACHMENTS_VERSION,
                                    params={"all_tenants": "1", "volume_id": volume_id, "instance_id": instance_uuid},
                                    what=f"Volume {volume_id}")
        return response.json()["attachments"]

    async def attachment_get(self, attachment_id: str) -> dict[str, Any]:
        response = await self._call("GET", f"/attachments/{segment(attachment_id)}", (200,),
                                    version=ATTACHMENTS_VERSION, what=f"Attachment {attachment_id}")
        return response.json()["attachment"]

    async def attachment_update(self, attachment_id: str, connector: dict) -> dict[str, Any]:
        response = await self._call("PUT", f"/attachments/{segment(attachment_id)}", (200,),
                                    json={"attachment": {"connector": connector}}, version=ATTACHMENTS_VERSION,
                                    what=f"Attachment {attachment_id}")
        return response.json()["attachment"]

    async def attachment_complete(self, attachment_id: str) -> None:
        await self._call("POST", f"/attachments/{segment(attachment_id)}/action", (200, 202, 204),
                         json={"os-complete": None}, version=ATTACHMENTS_VERSION,
                         what=f"Attachment {attachment_id}")

    async def attachment_delete(self, attachment_id: str) -> None:
        """Detach; an attachment already gone is not an error (every step may run twice)."""
        try:
            await self._call("DELETE", f"/attachments/{segment(attachment_id)}", (200, 202, 204),
                             version=ATTACHMENTS_VERSION, what=f"Attachment {attachment_id}")
        except VolumeNotFound:
            pass


def for_caller(http: httpx.AsyncClient, ctx) -> VolumeAPI:
    """The volume service as the caller of a compute API request."""
    return VolumeAPI(http, ctx.project_id, {"X-Auth-Token": ctx.token})


async def as_service(client) -> VolumeAPI:
    """The volume service as the service user (``client``: a ServiceClient), on its own project's URL."""
    await client.auth.token()
    return VolumeAPI(client, client.auth.project_id or "")


def device_path(connection_info: dict) -> str | None:
    """Where the host finds the volume's data: the file the volume service names in ``connection_info``."""
    data = (connection_info or {}).get("data") or {}
    for key in ("device_path", "path", "file_path"):
        if data.get(key):
            return str(data[key])
    if data.get("export") and data.get("name"):
        return f"{str(data['export']).rstrip('/')}/{data['name']}"
    return None
