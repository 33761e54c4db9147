"""rescue / unrescue: boot a server from a rescue image, its own disk attached, and back.

rescue answers 200 with the admin password of the rescue boot (given, or generated) when
``[api] enable_instance_password`` says so, as upstream (it kept 200 for compatibility).
The rescue image is checked here, before anything changes: one the image service does not know,
or a volume snapshot (``img_block_device_mapping``), is refused with 400. From 2.87 upstream
also rescues volume-backed servers whose rescue image asks for a stable device rescue
(``hw_rescue_bus`` and ``hw_rescue_device``); servers here always boot from an image, so that
microversion changes nothing: the stable device rescue of an image-backed server is the driver's
choice at any microversion, as upstream.
"""
from __future__ import annotations

import secrets

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, empty_response, json_response
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import begin, check_startable, tell_host

RESCUE = {
    "type": "object",
    "properties": {"rescue": {
        "type": ["object", "null"],
        "properties": {"adminPass": {"type": "string"}, "rescue_image_ref": {"type": "string", "format": "uuid"}},
        "additionalProperties": False}},
    "required": ["rescue"], "additionalProperties": False,
}


_SYMBOL_GROUPS = ("23456789", "ABCDEFGHJKLMNPQRSTUVWXYZ", "abcdefghijkmnopqrstuvwxyz")  # no look-alikes


def generate_password(length: int = 12) -> str:
    """A random password with a character of each group at least, as upstream generates them."""
    chars = [secrets.choice(group) for group in _SYMBOL_GROUPS]
    everything = "".join(_SYMBOL_GROUPS)
    chars += [secrets.choice(everything) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def _unsupported(image_id: str) -> HTTPError:
    return HTTPError(400, f"Requested rescue image '{image_id}' is not supported")


async def _check_rescue_image(request, image_id: str) -> None:
    response = await compute_api(request).image.get(
        f"/v2/images/{segment(image_id)}", headers={"X-Auth-Token": request.state.context.token})
    if response.status_code in (400, 404):
        raise _unsupported(image_id)
    if response.status_code != 200:
        raise HTTPError(503, f"The image service answered {response.status_code} looking up image {image_id}.")
    if response.json().get("img_block_device_mapping"):
        raise _unsupported(image_id)  # a volume snapshot: upstream cannot rescue from one either


@handles("rescue")
async def rescue(request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(RESCUE, body)
    args = body["rescue"] or {}
    password = args.get("adminPass")
    if password is None:
        password = generate_password()
    image_ref = args.get("rescue_image_ref")
    if image_ref:
        # upstream checks the lock and the state before the image: the same order of answers here
        check_startable(request, ref, "rescue")
        await _check_rescue_image(request, image_ref)
    server = await begin(request, ref, "rescue")
    await tell_host(compute_api(request), server, "rescue_instance", rescue_password=password,
                    rescue_image_ref=image_ref, request_id=request.state.context.request_id)
    if compute_api(request).conf.getbool("api", "enable_instance_password"):
        return json_response({"adminPass": password})
    return json_response({})


@handles("unrescue")
async def unrescue(request, ref: lookup.ServerRef, key: str, body: dict):
    server = await begin(request, ref, "unrescue")
    await tell_host(compute_api(request), server, "unrescue_instance", request_id=request.state.context.request_id)
    return empty_response(202)
