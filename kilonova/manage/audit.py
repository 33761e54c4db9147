"""``kilonova manage placement audit [--heal]``: Placement allocations against the instances that exist.

Finds (like ``nova-manage placement audit``, plus the reverse direction):

* orphaned allocations — a consumer that is no server (never was, or deleted);
* allocations of a server on a provider that is not its node;
* servers on a host that hold no allocation at all.

During a resize or cold migration the migration record is the consumer of the source host's
allocation (kilonova/compute/move_claims.py): that is no leak while the move is in progress (its
instance lives and the provider is one of the move's two nodes), and the instance's claim may be on
either node of the move. An allocation still held by a move that has ended, or whose server is
gone, is orphaned.

``--heal`` deletes orphaned allocations and gives servers without allocations
the ones their flavor needs on their node. A cell whose database cannot be read
is reported (its servers' allocations are neither judged nor healed) and the
audit ends with 1. Exit code: 0 nothing found, 3 problems found (and not all
healed), 4 everything found was healed, 1 error or a cell not audited.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from kilonova.common.catalog import root_urls
from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database, NotFound
from kilonova.compute import cells as cells_mod
from kilonova.compute.db import build_requests, instances, mappings, migrations
from kilonova.compute.db.cell_models import Migration
from kilonova.compute.scheduler.manager import resources_from_spec
from kilonova.manage import load_conf
from kilonova.manage.progress import Progress

# States in which a server holds resources on its host.
HOLDS_RESOURCES = ("active", "stopped", "paused", "suspended", "rescued", "resized", "building")


def register(groups) -> None:
    placement = groups.add_parser("placement", help="Placement checks").add_subparsers(dest="action", required=True)
    audit = placement.add_parser("audit", help="compare Placement allocations with the instances that exist")
    audit.add_argument("--heal", "--delete", dest="heal", action="store_true",
                       help="delete orphaned allocations and recreate missing ones")
    audit.add_argument("--verbose", action="store_true")
    audit.add_argument("--resource_provider", "--resource-provider", dest="provider",
                       help="only this provider (uuid)")
    audit.set_defaults(func=run)


@dataclass
class Findings:
    orphaned: list[tuple[str, str, str]] = field(default_factory=list)     # consumer, provider, why
    misplaced: list[tuple[str, str, str]] = field(default_factory=list)    # consumer, provider, node
    missing: list[tuple[str, dict]] = field(default_factory=list)          # instance uuid, instance
    unaudited: dict[str, str] = field(default_factory=dict)                # cell name -> why not
    healed: int = 0

    @property
    def problems(self) -> int:
        return len(self.orphaned) + len(self.misplaced) + len(self.missing)


def resources_of(flavor: dict) -> dict[str, int]:
    """What a server of ``flavor`` claims: the scheduler's own reckoning (PCPU for dedicated CPUs,
    ``resources:*`` overrides), so a healed claim is the one a boot would have made."""
    return resources_from_spec({"flavor": {"root_gb": 0, **flavor}})


def service_password(conf) -> str:
    password = conf.get("service_user", "password")
    if not password:
        secrets = conf.state_dir / "secrets.json"
        if secrets.exists():
            password = json.loads(secrets.read_text()).get("service_password", "")
    if not password:
        raise SystemExit("no service user password: set [service_user] password in the configuration file")
    return password


class Auditor:
    def __init__(self, conf, placement: ServiceClient, verbose: bool = False):
        self.conf = conf
        self.placement = placement
        self.verbose = verbose
        self.api_db = Database(conf.get("api_database", "connection"), name="nova_api", workers=2)
        self.cells = cells_mod.Cells(self.api_db)

    def close(self) -> None:
        for cell in self.cells.all():
            cell.db.close()
        self.api_db.close()

    def say(self, text: str) -> None:
        if self.verbose:
            print(text)

    async def _json(self, path: str) -> dict:
        response = await self.placement.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def _instance(self, uuid: str) -> dict | None:
        """The live server with this uuid (a build request counts), or None; CellUnreadable if its cell fails."""
        mapping = await self.api_db.read(mappings.get_instance_mapping, uuid)
        if mapping is None:
            return None
        if mapping.cell_id is None:
            pending = await self.api_db.read(build_requests.get, uuid)
            return None if pending is None else {**pending, "node": None}
        cell = self.cells.by_id(mapping.cell_id)
        if cell is None:
            return None
        try:
            return await _read_cell(cell, instances.get, uuid)
        except NotFound:
            return None

    async def _moves(self, findings: Findings) -> dict[str, dict]:
        """The moves in progress of every readable cell, by migration uuid."""
        moves: dict[str, dict] = {}
        for cell in self.cells.real():
            try:
                for move in await _read_cell(cell, _moves_in_progress):
                    moves[move["uuid"]] = move
            except CellUnreadable as exc:
                findings.unaudited.setdefault(exc.cell, exc.reason)
        return moves

    async def _ended_move(self, uuid: str) -> dict | None:
        """A migration record that is not in progress (ended, or of a deleted server), or None."""
        for cell in self.cells.real():
            try:
                return await _read_cell(cell, migrations.get, uuid)
            except (NotFound, CellUnreadable):
                continue
        return None

    async def _judge_move_claim(self, findings: Findings, consumer: str, provider: dict, moves: dict) -> bool:
        """Whether ``consumer`` is a migration record (its claim then judged here)."""
        move = moves.get(consumer)
        if move is not None and await self._instance(move["instance_uuid"]) is not None \
                and provider["name"] in (move["source_node"], move["dest_node"]):
            return True
        move = move or await self._ended_move(consumer)
        if move is None:
            return False
        why = f"held by migration {consumer}, which is {move['status']}"
        findings.orphaned.append((consumer, provider["uuid"], why))
        self.say(f"Allocations for consumer UUID {consumer} on Resource Provider {provider['uuid']} can be "
                 f"deleted: {why}")
        return True

    async def _evacuated_from(self, instance: dict, node: str) -> bool:
        """Whether ``node`` is the source of an evacuation of ``instance`` that its host has not cleaned up yet
        (upstream keeps the source's claim until the failed host's agent comes back)."""
        mapping = await self.api_db.read(mappings.get_instance_mapping, instance["uuid"])
        cell = self.cells.by_id(mapping.cell_id) if mapping is not None and mapping.cell_id is not None else None
        if cell is None:
            return False
        found = await _read_cell(cell, migrations.list_for_instance, instance["uuid"], "evacuation",
                                 ("accepted", "pre-migrating", "done"))
        return any(m["source_node"] == node or m["source_compute"] == node for m in found)

    async def audit(self, only_provider: str | None = None) -> Findings:
        self.cells.load()
        findings = Findings()
        moves = await self._moves(findings)
        moving = {move["instance_uuid"]: move for move in moves.values()}
        providers = (await self._json("/resource_providers"))["resource_providers"]
        by_name = {p["name"]: p["uuid"] for p in providers}
        seen: set[str] = set()
        audited = [p for p in providers if not only_provider or p["uuid"] == only_provider]
        with Progress("auditing resource providers", len(audited)) as progress:
            for provider in audited:
                await self._audit_provider(findings, provider, moves, moving, seen)
                progress.advance()
        if not only_provider:
            for cell in self.cells.real():
                try:
                    rows = await _read_cell(cell, instances.query, project_id=None, filters={}, limit=None)
                except CellUnreadable as exc:
                    findings.unaudited.setdefault(exc.cell, exc.reason)
                    continue
                for row in rows:
                    if row["uuid"] in seen or not row.get("node") or row["vm_state"] not in HOLDS_RESOURCES:
                        continue
                    if row["uuid"] in moving and moving[row["uuid"]]["uuid"] in seen:
                        continue  # being scheduled: its move holds its claim until the destination is chosen
                    findings.missing.append((row["uuid"], {**row, "_provider": by_name.get(row["node"])}))
                    self.say(f"Server {row['uuid']} on {row['node']} holds no allocation")
        return findings

    async def _audit_provider(self, findings: Findings, provider: dict, moves: dict, moving: dict,
                              seen: set[str]) -> None:
        """Each allocation on ``provider``: its consumer's server must exist, hold resources and run there."""
        allocations = (await self._json(f"/resource_providers/{provider['uuid']}/allocations"))["allocations"]
        for consumer in sorted(allocations):
            seen.add(consumer)
            try:
                instance = await self._instance(consumer)
            except CellUnreadable as exc:  # its server cannot be looked at: leave its claim alone
                findings.unaudited.setdefault(exc.cell, exc.reason)
                continue
            if instance is None and await self._judge_move_claim(findings, consumer, provider, moves):
                continue
            move = moving.get(consumer)
            if instance is None:
                findings.orphaned.append((consumer, provider["uuid"], "no such server"))
                self.say(f"Allocations for consumer UUID {consumer} on Resource Provider "
                         f"{provider['uuid']} can be deleted: no server uses them")
            elif instance.get("vm_state") == "shelved_offloaded" and not instance.get("task_state"):
                # Offloaded and not being unshelved: it holds nothing anywhere.
                findings.orphaned.append((consumer, provider["uuid"], "server is shelved offloaded"))
                self.say(f"Allocations for consumer UUID {consumer} on Resource Provider "
                         f"{provider['uuid']} can be deleted: the server is shelved offloaded")
            elif instance.get("node") and instance["node"] != provider["name"] and not (
                    move and provider["name"] in (move["source_node"], move["dest_node"])) and \
                    not await self._evacuated_from(instance, provider["name"]):
                findings.misplaced.append((consumer, provider["uuid"], instance["node"]))
                self.say(f"Allocations for server {consumer} are on {provider['name']} but it runs on "
                         f"{instance['node']}")

    async def heal(self, findings: Findings) -> None:
        for consumer, _provider, _why in findings.orphaned:
            response = await self.placement.delete(f"/allocations/{consumer}")
            if response.status_code in (204, 404):
                findings.healed += 1
                self.say(f"Deleted allocations for consumer UUID {consumer}")
        for uuid, row in findings.missing:
            if row["_provider"] is None:
                continue
            body = {"allocations": {row["_provider"]: {"resources": resources_of(row["flavor"])}},
                    "project_id": row["project_id"], "user_id": row["user_id"], "consumer_generation": None}
            response = await self.placement.put(f"/allocations/{uuid}", json=body)
            if response.status_code == 204:
                findings.healed += 1
                self.say(f"Created allocations for server {uuid} on {row['node']}")


def _moves_in_progress(session) -> list[dict]:
    rows = session.scalars(sa.select(Migration).where(Migration.deleted == 0,
                                                      Migration.status.in_(migrations.IN_PROGRESS)))
    return [migrations.to_dict(row) for row in rows]


class CellUnreadable(Exception):
    def __init__(self, cell: str, reason: str):
        super().__init__(f"cell {cell}: {reason}")
        self.cell = cell
        self.reason = reason


async def _read_cell(cell: cells_mod.Cell, fn, *args, **kwargs):
    """A read of a cell database; its failure (down, not migrated, ...) becomes CellUnreadable."""
    try:
        return await cell.read(fn, *args, **kwargs)
    except (cells_mod.CellDown, sa.exc.SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CellUnreadable(cell.name, reason) from exc


def service_auth(conf) -> tuple[httpx.AsyncClient, ServiceAuth]:
    """The identity client and the service user's login the admin commands call the services with."""
    identity = httpx.AsyncClient(base_url=root_urls(conf)["identity"], timeout=30)
    return identity, ServiceAuth(identity, conf.get("service_user", "username"), service_password(conf),
                                 conf.get("service_user", "project_name"))


def run_async(main, args: argparse.Namespace) -> int:
    """Run an admin command's coroutine; a service or database that fails it is exit code 1, said why."""
    try:
        return asyncio.run(main(args))
    except httpx.HTTPError as exc:
        try:
            where = f" ({exc.request.method} {exc.request.url})"
        except RuntimeError:   # an error raised without its request
            where = ""
        print(f"ERROR: {exc or type(exc).__name__}{where}", file=sys.stderr)
        return 1
    except (RuntimeError, sa.exc.SQLAlchemyError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    urls = root_urls(conf)
    identity, auth = service_auth(conf)
    placement = ServiceClient(httpx.AsyncClient(base_url=urls["placement"], timeout=30), auth,
                              {"OpenStack-API-Version": "placement 1.36"})
    auditor = Auditor(conf, placement, verbose=args.verbose)
    try:
        findings = await auditor.audit(args.provider)
        if args.heal and findings.problems:
            await auditor.heal(findings)
    finally:
        auditor.close()
        await identity.aclose()
        await placement.http.aclose()
    return report(findings, args.heal)


def report(findings: Findings, heal: bool) -> int:
    """Print the summary of an audit (``heal``: whether healing was asked for); returns its exit code."""
    print(f"Processed allocations: {len(findings.orphaned)} orphaned, {len(findings.misplaced)} on the wrong "
          f"provider, {len(findings.missing)} servers without allocations"
          + (f"; healed {findings.healed}" if heal else ""))
    for cell, reason in sorted(findings.unaudited.items()):
        print(f"Cell {cell} could not be audited (its servers' allocations were left alone): {reason}")
    if findings.unaudited:
        return 1
    if not findings.problems:
        return 0
    return 4 if heal and findings.healed == len(findings.orphaned) + len(findings.missing) \
        and not findings.misplaced else 3


def run(args: argparse.Namespace) -> int:
    return run_async(_run, args)
