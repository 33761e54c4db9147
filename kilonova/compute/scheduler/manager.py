"""The scheduler: Placement candidates -> filters -> weighers -> claim in Placement.

``select_destinations`` is an RPC call from the conductor. For each server it
returns the chosen host (already claimed in Placement) followed by alternates
(not claimed; the conductor claims one if the build must be retried there).
When nothing fits it raises ``NoValidHost`` saying what ruled the hosts out.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any

import orjson

from kilonova.common import metrics
from kilonova.common.rpc import ExpectedError
from kilonova.config import ConfigError
from kilonova.compute.scheduler import explain as explain_mod
from kilonova.compute.scheduler import request_filters
from kilonova.compute.scheduler import weighers as weighers_mod
from kilonova.compute.scheduler.candidate_answer import CandidateAnswers
from kilonova.compute.scheduler.explain import Trace, describe
from kilonova.compute.scheduler.filters import all_filters
from kilonova.compute.scheduler.host_cache import HostCache
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.hint_hosts import hint_hosts
from kilonova.compute.scheduler.request_filters import PlacementQuery
from kilonova.compute.scheduler.server_group import GroupView
from kilonova.compute.scheduler.weighers.image_properties import ImagePropertiesWeigher

LOG = logging.getLogger(__name__)


# How often a claim on one host is retried after the instance's existing claim changed under it.
CLAIM_CONFLICT_RETRIES = 3


class NoValidHost(ExpectedError):
    pass


def _cpu_class(spec: dict[str, Any]) -> str:
    """PCPU for hw:cpu_policy=dedicated (flavor, else image property hw_cpu_policy), as Nova asks; else VCPU."""
    policy = (spec["flavor"].get("extra_specs") or {}).get("hw:cpu_policy") or \
        ((spec.get("image") or {}).get("properties") or {}).get("hw_cpu_policy")
    return "PCPU" if policy == "dedicated" else "VCPU"


def resources_from_spec(spec: dict[str, Any]) -> dict[str, int]:
    flavor = spec["flavor"]
    # A server booted from a volume has no local root disk: its root_gb is not claimed (as upstream's is_bfv).
    root_gb = 0 if spec.get("is_bfv") else flavor["root_gb"]
    resources = {_cpu_class(spec): flavor["vcpus"], "MEMORY_MB": flavor["memory_mb"],
                 "DISK_GB": root_gb + flavor.get("ephemeral_gb", 0) + math.ceil(flavor.get("swap", 0) / 1024)}
    for key, value in (flavor.get("extra_specs") or {}).items():
        if key.startswith("resources:"):
            try:
                resources[key.split(":", 1)[1]] = int(value)
            except ValueError:
                raise NoValidHost(f"Invalid flavor extra spec {key}={value}") from None
    return {rc: amount for rc, amount in resources.items() if amount > 0}


def traits_from_spec(spec: dict[str, Any]) -> list[str]:
    """required=... entries: TRAIT for required, !TRAIT for forbidden."""
    return request_filters.traits_of(spec)


def candidate_query(spec: dict[str, Any], resources: dict[str, int], limit: int) -> dict[str, str]:
    """The GET /allocation_candidates parameters for a request spec's flavor and image alone."""
    params = {"resources": ",".join(f"{rc}:{n}" for rc, n in sorted(resources.items())), "limit": str(limit)}
    traits = traits_from_spec(spec)
    if traits:
        params["required"] = ",".join(traits)
    return params


class SchedulerManager:
    def __init__(self, conf, placement, cells):
        self.conf = conf
        self.placement = placement
        self.cells = cells
        enabled = conf.getlist("filter_scheduler", "enabled_filters")
        known = all_filters()
        unknown = [name for name in enabled if name not in known]
        if unknown:  # a misspelt isolation filter must not quietly let every host through (upstream refuses too)
            raise ConfigError(f"[filter_scheduler] enabled_filters: Scheduler Host Filter {', '.join(unknown)} "
                              "could not be found.")
        self.filters = [known[name](conf) for name in enabled]
        self.weighers = [cls(conf) for cls in weighers_mod.all_weighers()]
        # Aggregate metadata feeds the aggregate filters and the weighers' per-aggregate multipliers.
        self.read_aggregates = True
        self.read_counts = any(w.needs_instance_counts and w.multiplier for w in self.weighers)
        self.read_images = any(isinstance(w, ImagePropertiesWeigher) and w.multiplier for w in self.weighers)
        self.max_attempts = max(1, conf.getint("scheduler", "max_attempts"))
        self.subset_size = max(1, conf.getint("filter_scheduler", "host_subset_size"))
        self.shuffle_best = conf.getbool("filter_scheduler", "shuffle_best_same_weighed_hosts")
        self.limit = conf.getint("scheduler", "max_placement_results")
        self.down_time = conf.getfloat("DEFAULT", "service_down_time")
        self.host_cache = HostCache(cells, self.down_time)
        self.groups = GroupView(cells)
        self.answers = CandidateAnswers()
        self._usage: dict[int, tuple[dict, dict, dict]] = {}  # id(provider summary) -> (it, capacity, used)

    # ------------------------------------------------------------------ RPC

    @metrics.timed(metrics.SCHEDULER_DECISION)
    async def select_destinations(self, request_spec: dict, instance_uuids: list[str],
                                  ignore_hosts: list[str] | None = None) -> list[list[dict]]:
        resources, kept, spec = await self._prepare(request_spec, instance_uuids, ignore_hosts)
        group = spec.get("instance_group")
        passing = self._filter(kept, spec, resources)
        results = []
        for index, uuid in enumerate(instance_uuids):
            if group and index:  # the group's policy again, with the hosts chosen for this request so far
                passing = self._filter(kept, spec, resources, chosen_here=index)
            ordered = self._order(passing, spec)
            chosen = await self._claim_first(ordered, uuid, spec)
            if chosen is None:
                raise NoValidHost("No valid host was found. There are not enough hosts available "
                                  f"(every candidate host was claimed by other requests for {describe(resources)}).")
            alternates = [h for h in ordered if h.host != chosen.host][: self.max_attempts - 1]
            LOG.info("scheduled %s to %s (%d of %d candidate hosts passed the filters; alternates: %s)", uuid,
                     chosen.host, len(passing), len(kept), ", ".join(h.host for h in alternates) or "none")
            results.append([self._selection(chosen)] + [self._selection(h) for h in alternates])
            self._consume(chosen, resources)
            if group:
                self.groups.chose(group, uuid, chosen.host)
        return results

    async def explain(self, request_spec: dict, instance_uuids: list[str] | None = None,
                      ignore_hosts: list[str] | None = None, top: int = 10) -> dict[str, Any]:
        """A dry run: every stage with the hosts it removed and why, and the weighed order; nothing claimed."""
        trace = Trace()
        answer: dict[str, Any] = {"stages": trace.stages, "weighed": [], "chosen": None, "error": None}
        try:
            resources, kept, spec = await self._prepare(request_spec, instance_uuids or [], ignore_hosts, trace)
            answer["resources"] = resources
            passing = self._filter(kept, spec, resources, trace=trace)
        except NoValidHost as exc:
            answer["error"] = str(exc)
            return answer
        contributions = weighers_mod.weights(self.weighers, passing, spec)
        for host, total in weighers_mod.weighed(self.weighers, passing, spec)[:top]:
            index = passing.index(host)
            answer["weighed"].append({"host": host.host, "node": host.nodename, "weight": round(total, 6),
                                      "by_weigher": {name: round(values[index], 6)
                                                     for name, values in contributions.items()}})
        answer["chosen"] = answer["weighed"][0]["host"] if answer["weighed"] else None
        return answer

    # ------------------------------------------------------------------ steps

    async def _prepare(self, request_spec: dict, instance_uuids: list[str], ignore_hosts: list[str] | None,
                       trace: Trace | None = None) -> tuple[dict[str, int], list[HostState], dict]:
        """Resources, the candidate hosts the filters will judge, and the spec they read (group, hint hosts)."""
        resources = resources_from_spec(request_spec)
        hosts = await self._candidates(request_spec, resources, trace)
        excluded = set(ignore_hosts or [])
        kept = [h for h in hosts if h.host not in excluded]
        if trace is not None and excluded:
            trace.add("ignore_hosts", "request", len(hosts), len(kept), "excluded by the request (a move's own "
                      "or already tried hosts)", [h.host for h in hosts if h.host in excluded])
        if hosts and not kept:
            raise NoValidHost(f"No valid host was found. Placement found {len(hosts)} host(s) with "
                              f"{describe(resources)}, none other than {', '.join(sorted(excluded))}, "
                              "which the request excludes.")
        group = await self.groups.load(request_spec, instance_uuids)
        spec = dict(request_spec, instance_group=group) if group else request_spec
        servers_hosts = await hint_hosts(self.cells, spec)
        if servers_hosts is not None:
            spec = dict(spec, hint_hosts=servers_hosts)
        return resources, kept, spec

    async def _candidates(self, spec: dict, resources: dict[str, int], trace: Trace | None = None) -> list[HostState]:
        aggregates, zones, metadata = await self.host_cache.api_view()
        query = PlacementQuery(resources)
        try:
            request_filters.apply(self.conf, spec, query, aggregates)
        except request_filters.NoAggregateForTenant as exc:
            if trace is not None:
                trace.add("require_tenant_aggregate", "prefilter", 0, 0, str(exc))
            raise NoValidHost(f"No valid host was found. Pre-filter require_tenant_aggregate: {exc}.") from None
        if spec.get("requested_destination"):  # a create that named its host/node (API 2.74)
            query.in_tree = await self._destination_provider(spec["requested_destination"])
        # The databases are read while Placement answers (their reads run on the databases' threads).
        # A cell with many more hosts than Placement returns candidates is read for its candidates alone, after.
        large = {c.uuid for c in self.cells.real() if self.host_cache.sizes.get(c.uuid, 0) > 2 * self.limit}
        fleet = asyncio.ensure_future(self._fleet(zones, metadata, large))
        try:
            response = await self.placement.get("/allocation_candidates", params=query.params(self.limit))
            if response.status_code != 200:
                raise NoValidHost(f"No valid host was found. Placement refused the query for {describe(resources)}: "
                                  f"{explain_mod.placement_error(response)}")
            # up to max_placement_results candidates; the allocation requests part kept while unchanged
            by_provider, count, summaries = self.answers.parse(response.content)
            if not count:
                raise NoValidHost(await explain_mod.empty_placement(self.placement, query, self.limit, trace))
        except BaseException:
            _drop(fleet)
            raise
        zones, metadata, cells = await fleet
        for cell in self.cells.real():
            if cell.uuid in large:
                cells.append((cell, *await self.host_cache.some_hosts(cell, list(by_provider), self.read_counts),
                              await self.host_cache.image_properties(cell) if self.read_images else {}))
        states = self._host_states(by_provider, summaries, (zones, metadata, cells))
        if trace is not None:
            prefilters = "; ".join(f"{stage}: {added['why']}" for stage, added in query.steps) or "none"
            trace.add("placement", "placement", len(states), len(states),
                      f"{len(states)} host(s) have {describe(resources)} and pass the pre-filters ({prefilters})")
        if spec.get("requested_cell"):  # a move: upstream keeps a server in its cell (no cross-cell moves)
            inside = [h for h in states if h.cell_uuid == spec["requested_cell"]]
            if trace is not None:
                trace.add("requested_cell", "request", len(states), len(inside), "not in the server's cell",
                          [h.host for h in states if h.cell_uuid != spec["requested_cell"]])
            states = inside
            if not states:
                raise NoValidHost(f"No valid host was found. No host in the server's cell has "
                                  f"{describe(resources)} available (moves between cells are not allowed).")
        return states

    async def _destination_provider(self, destination: dict) -> str:
        """The provider of the compute node a request named: its candidates come from that tree alone."""
        for cell in self.cells.real():
            for node in await self.host_cache.hosts(cell):
                if destination.get("host", node.host) == node.host and \
                        destination.get("node", node.nodename) == node.nodename:
                    return node.uuid
        named = ", ".join(f"{key} {destination[key]}" for key in ("host", "node") if destination.get(key))
        raise NoValidHost(f"No valid host was found. The requested destination ({named}) is not a known compute node.")

    async def _fleet(self, zones: dict, metadata: dict, skip: set[str]) -> tuple:
        """What the host states are built from: zones, aggregate metadata and, per readable cell (but those of
        ``skip``), its compute hosts with their instance counts and images (when a weigher reads them)."""
        cells = []
        for cell in self.cells.real():
            if cell.uuid in skip:
                continue
            if self.read_counts:
                rows, counts = await self.host_cache.hosts_and_counts(cell)
            else:
                rows, counts = await self.host_cache.hosts(cell), {}
            images = await self.host_cache.image_properties(cell) if self.read_images else {}
            cells.append((cell, rows, counts, images))
        return zones, metadata, cells

    def _host_states(self, by_provider: dict[str, dict], summaries: dict, fleet: tuple) -> list[HostState]:
        zones, metadata, cells = fleet
        states = []
        append = states.append
        default_zone = self.conf.get("DEFAULT", "default_availability_zone")
        empty: dict = {}
        no_counts = (0, 0)
        # A provider summary kept from the last answer (candidate_answer.py) gives the same capacity and
        # usage: read once, shared by the decisions' host states (never changed: _consume replaces a host's).
        kept, usage = self._usage, {}
        self._usage = usage
        for cell, nodes, counts, images in cells:
            cell_uuid, cell_name = cell.uuid, cell.name
            # the nodes in node id order (host_cache.Node), unpacked whole: built for each candidate of each request
            for (uuid, _, name, nodename, hv_type, hv_version, host_ip, cpu_info, supported, failed, numa, pci,
                 up, disabled) in nodes:
                request = by_provider.get(uuid)
                if request is None:
                    continue
                summary = summaries.get(uuid, empty)
                known = kept.get(id(summary))
                if known is None or known[0] is not summary:
                    capacity, used = {}, {}
                    for rc, amounts in summary.get("resources", empty).items():
                        capacity[rc] = amounts["capacity"]
                        used[rc] = amounts["used"]
                    known = (summary, capacity, used)
                usage[id(summary)] = known
                num_instances, num_io_ops = counts.get(name, no_counts)
                append(HostState(  # positional, in field order
                    uuid, name, nodename, cell_uuid, zones.get(name, default_zone), up, disabled, hv_type, supported,
                    known[1], known[2], request, cpu_info, hv_version, host_ip, metadata.get(name, empty),
                    cell_name, num_instances, num_io_ops, failed, numa, pci, images.get(name)))
        return states

    def _filter(self, hosts: list[HostState], spec: dict, resources: dict[str, int],
                chosen_here: int = 0, trace: Trace | None = None) -> list[HostState]:
        if (spec.get("requested_destination") or {}).get("force"):
            # A host forced through availability_zone=zone:host:node skips the filters, as upstream's forced hosts.
            if trace is not None:
                trace.add("forced_destination", "request", len(hosts), len(hosts),
                          "a forced host (availability_zone=zone:host:node): the filters are not run, as upstream")
            return hosts
        remaining = hosts
        removed: list[str] = []
        for flt in self.filters:
            if not flt.applies(spec):
                continue
            kept = flt.filter_all(remaining, spec)
            if len(kept) < len(remaining):
                removed.append(f"{type(flt).__name__} removed {len(remaining) - len(kept)} of "
                               f"{len(remaining)} hosts ({flt.explain(spec)})")
            if trace is not None:
                passed = {id(h) for h in kept}
                trace.add(type(flt).__name__, "filter", len(remaining), len(kept), flt.explain(spec),
                          [h.host for h in remaining if id(h) not in passed])
            remaining = kept
            if not remaining:
                break
        if not remaining:
            found = f"Placement found {len(hosts)} host(s) with {describe(resources)}"
            if chosen_here:
                found += f" (after {chosen_here} of the request's servers were placed)"
            why = "; ".join(removed) if removed else "none is left once the hosts the request excludes (the " \
                                                     "server's own host for a move) are left out"
            raise NoValidHost(f"No valid host was found. {found}; {why}.")
        return remaining

    def _order(self, hosts: list[HostState], spec: dict) -> list[HostState]:
        ordered = weighers_mod.weigh_hosts(self.weighers, hosts, spec)
        if self.shuffle_best and self.subset_size == 1 and len(ordered) > 1:
            # Equal hosts (a fresh fleet) in a fixed order send every concurrent request to the first one.
            best = self._tied_with_first(ordered, spec)
            if best > 1:
                first = ordered[random.randrange(best)]
                ordered = [first] + [h for h in ordered if h is not first]
        if self.subset_size > 1:
            # Pick randomly among the best few so concurrent schedulers collide less.
            subset = ordered[: self.subset_size]
            first = random.choice(subset)
            ordered = [first] + [h for h in ordered if h is not first]
        return ordered

    def _tied_with_first(self, ordered: list[HostState], spec: dict) -> int:
        """How many hosts at the head of ``ordered`` every weigher rates exactly as the first."""
        active = weighers_mod.active(self.weighers, ordered, spec)

        def rating(host):
            return [w.multiplier_for(host) * w.weigh(host, spec) for w in active]

        first = rating(ordered[0])
        count = 1
        for host in ordered[1:]:
            if rating(host) != first:
                break
            count += 1
        return count

    async def _claim_first(self, ordered: list[HostState], instance_uuid: str, spec: dict) -> HostState | None:
        """Claim on the first host that takes it, minding a claim the instance may hold already.

        An earlier attempt for the same instance (a conductor that died waiting for this answer,
        a redelivered build) may have claimed before us. When that claim is on one of the hosts
        that fit, it is kept and that host is the answer, so both attempts name the same host.
        Otherwise it is replaced: Placement swaps a consumer's allocations in one capacity-checked
        transaction when given its generation. Never two claims, never an overcommit.
        """
        generation = None  # the usual case: the instance holds nothing yet
        for host in ordered:
            for _ in range(CLAIM_CONFLICT_RETRIES):
                body = {"allocations": host.allocation_request["allocations"], "project_id": spec["project_id"],
                        "user_id": spec["user_id"], "consumer_generation": generation}
                response = await self.placement.put(f"/allocations/{instance_uuid}", json=body)
                if response.status_code == 204:
                    return host
                if not _consumer_conflict(response):
                    break  # the host is full (or changed): the next one
                held, generation = await self._held_claim(instance_uuid)
                holder = next((h for h in ordered if _claims(h) == held), None)
                if holder is not None:
                    LOG.warning("instance %s already holds a claim on %s; keeping it", instance_uuid, holder.host)
                    return holder
                LOG.warning("instance %s holds a claim elsewhere (generation %s); replacing it", instance_uuid,
                         generation)
            LOG.info("claim of %s on %s refused (%s); trying the next host", instance_uuid, host.host,
                     response.status_code)
        return None

    async def _held_claim(self, instance_uuid: str) -> tuple[dict, int | None]:
        """({provider: resources}, consumer generation) of what the instance holds now."""
        response = await self.placement.get(f"/allocations/{instance_uuid}")
        if response.status_code != 200:
            return {}, None
        body = response.json()
        held = {rp: a["resources"] for rp, a in body.get("allocations", {}).items()}
        return held, body.get("consumer_generation") if held else None

    @staticmethod
    def _consume(host: HostState, resources: dict[str, int]) -> None:
        # a new dict: the one a host state starts with is shared with later decisions (_host_states)
        used = dict(host.used)
        for rc, amount in resources.items():
            used[rc] = used.get(rc, 0) + amount
        host.used = used

    @staticmethod
    def _selection(host: HostState) -> dict:
        return {"host": host.host, "nodename": host.nodename, "compute_node_uuid": host.uuid,
                "cell_uuid": host.cell_uuid, "availability_zone": host.availability_zone,
                # a copy: the parsed answer is shared with later decisions (candidate_answer.py)
                "allocation_request": orjson.loads(orjson.dumps(host.allocation_request))}


def _drop(task: asyncio.Future) -> None:
    """A read no longer wanted: cancelled, and its outcome retrieved so that nothing is logged about it."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


def _claims(host: HostState) -> dict:
    return {rp: a["resources"] for rp, a in host.allocation_request["allocations"].items()}


def _consumer_conflict(response) -> bool:
    """A 409 about generations (the consumer's, or a race Placement gave up retrying), not capacity."""
    if response.status_code != 409:
        return False
    try:
        return any(e.get("code") == "placement.concurrent_update" for e in response.json().get("errors", []))
    except ValueError:
        return False
