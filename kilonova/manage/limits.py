"""``kilonova manage limits migrate_to_unified_limits``: the classic quota limits copied to Keystone.

As upstream's nova-manage command: without ``--project-id`` the defaults (``[quota]`` and the ``default``
quota class) become the compute service's registered limits; with it, that project's os-quota-sets
overrides become its limits. Names as the unified limits driver reads them (``instances`` -> ``servers``,
``cores`` -> ``class:VCPU``, ...); limits Keystone already has are left as they are; ``--dry-run`` only
says what would be made. Per-user quotas are not copied (unified limits have none). Then the resource
classes the flavors ask for that still have no registered limit are listed: with unified limits they count
as 0 for every project (class:DISK_GB most often).
"""
from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from kilonova.common.clients import ServiceClient
from kilonova.common.db import Database
from kilonova.compute.db import flavors, quotas
from kilonova.compute.quota.counting import flavor_resources
from kilonova.compute.quota.unified import KEYSTONE_NAMES
from kilonova.manage import load_conf
from kilonova.manage.audit import run_async, service_auth


def register(groups) -> None:
    group = groups.add_parser("limits", help="unified limits in Keystone")
    actions = group.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate_to_unified_limits",
                                 help="Copy quota limits from the Nova API database to Keystone.")
    migrate.add_argument("--project-id", help="Project ID for which to migrate quota limits")
    migrate.add_argument("--region-id", help="Region ID for which to migrate quota limits")
    migrate.add_argument("--verbose", action="store_true", help="Provide verbose output during execution.")
    migrate.add_argument("--dry-run", action="store_true",
                         help="Show what limits would be created without actually creating them.")
    migrate.set_defaults(func=run)


def _legacy_limits(conf, project_id: str | None) -> tuple[dict[str, int], set[str]]:
    """(Keystone name -> value to copy, resource classes the flavors ask for), from the API database."""
    database = Database(conf.get("api_database", "connection"), name="nova_api")
    try:
        found = database.run_sync(quotas.get_overrides, project_id, write=False) if project_id else \
            database.run_sync(quotas.default_limits, conf, write=False)
        classes = database.run_sync(lambda s: {rc for row in flavors.list_flavors(s, is_public=None)
                                               for rc in flavor_resources(flavors.snapshot(row))}, write=False)
    finally:
        database.close()
    return {KEYSTONE_NAMES[name]: value for name, value in found.items() if name in KEYSTONE_NAMES}, classes


async def _existing(keystone: ServiceClient, collection: str, query: dict[str, str]) -> set[str]:
    response = await keystone.get(f"/v3/{collection}?{urlencode(query)}")
    response.raise_for_status()
    return {item["resource_name"] for item in response.json()[collection]}


async def _migrate(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    wanted, classes = _legacy_limits(conf, args.project_id)
    identity, auth = service_auth(conf)
    keystone = ServiceClient(identity, auth)
    try:
        services = (await keystone.get("/v3/services?type=compute")).json().get("services", [])
        if not services:
            raise RuntimeError("the identity service's catalog has no compute service")
        service_id = services[0]["id"]
        scope = {"service_id": service_id, **({"region_id": args.region_id} if args.region_id else {})}
        collection = "limits" if args.project_id else "registered_limits"
        query = {**scope, "project_id": args.project_id} if args.project_id else scope
        have = await _existing(keystone, collection, query)
        items = [_item(args, service_id, name, value) for name, value in sorted(wanted.items()) if name not in have]
        for name in sorted(set(wanted) & have):
            if args.verbose:
                print(f"{name}: already in Keystone, left as it is")
        for item in items:
            print(f"{'Would create' if args.dry_run else 'Creating'} {collection[:-1].replace('_', ' ')} "
                  f"{item['resource_name']} = {item.get('resource_limit', item.get('default_limit'))}")
        if items and not args.dry_run:
            response = await keystone.post(f"/v3/{collection}", json={collection: items})
            if response.status_code != 201:
                raise RuntimeError(f"Keystone refused the limits: {response.status_code} {response.text}")
        registered = await _existing(keystone, "registered_limits", scope)
        unlimited = sorted(f"class:{rc}" for rc in classes if f"class:{rc}" not in registered | set(wanted))
        if unlimited and not args.project_id:
            print("No registered limit for these resources the flavors ask for (with unified limits every "
                  f"project's limit of them is 0 until one is set): {', '.join(unlimited)}")
        print(f"{'Would create' if args.dry_run else 'Created'} {len(items)} "
              f"{'limits' if args.project_id else 'registered limits'}.")
        return 0
    finally:
        await identity.aclose()


def _item(args: argparse.Namespace, service_id: str, name: str, value: int) -> dict[str, Any]:
    item: dict[str, Any] = {"service_id": service_id, "resource_name": name}
    if args.region_id:
        item["region_id"] = args.region_id
    if args.project_id:
        item.update(project_id=args.project_id, resource_limit=value)
    else:
        item["default_limit"] = value
    return item


def run(args: argparse.Namespace) -> int:
    return run_async(_migrate, args)
