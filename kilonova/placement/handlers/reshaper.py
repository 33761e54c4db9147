"""POST /reshaper (1.30): move inventories and allocations between providers atomically."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.allocation import consumer_request
from kilonova.placement.handlers.inventory import _values
from kilonova.placement.handlers.util import policy
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import reshaper


def schema(request: Request) -> dict:
    return schemas.for_version(schemas.RESHAPE, request.state.version)


@versioned("1.30")
@policy("placement:reshaper:reshape")
async def reshape(request: Request) -> Response:
    data = await util.body(request, schema(request))
    new_inventories = {}
    for rp_uuid, entry in data["inventories"].items():
        # as upstream, reserved is not compared with total here (only the inventory routes do)
        records = {name: _values(values) for name, values in entry["inventories"].items()}
        new_inventories[util.normalize_uuid(rp_uuid)] = (entry["resource_provider_generation"], records)
    requests = [consumer_request(request, util.normalize_uuid(c), d) for c, d in data["allocations"].items()]
    try:
        await util.db(request).write(reshaper.reshape, new_inventories, requests)
    except reshaper.ProviderMissing as error:
        raise HTTPError(400, str(error), code=errors.RESOURCE_PROVIDER_NOT_FOUND) from None
    except exc.InUse as error:
        raise HTTPError(409, f"update conflict: {error}", code=errors.INVENTORY_INUSE) from None
    except exc.ProviderConcurrentUpdate as error:
        raise HTTPError(409, f"update conflict: {error}", code=errors.CONCURRENT_UPDATE) from None
    except exc.ConcurrentUpdate as error:   # a consumer generation
        raise HTTPError(409, str(error), code=errors.CONCURRENT_UPDATE) from None
    except exc.Invalid as error:
        raise HTTPError(400, str(error)) from None
    except exc.NotFound as error:
        raise HTTPError(400, f"malformed reshaper data: {error}") from None
    except exc.InvalidInventory as error:
        raise HTTPError(409, f"Unable to allocate inventory: {error}") from None
    return util.no_content()


def register(router: Router) -> None:
    router.add("POST", "/reshaper", reshape)
