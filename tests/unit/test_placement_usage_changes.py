"""Allocation candidates follow every claim, release and inventory change at once: the in-memory capacity index
patches a view whose providers changed only in usage (objects/capacity.py), and what it answers must be what a
search over the database as it is now would answer."""
import random
import uuid

from kilonova.placement.objects import capacity
from tests.unit.test_scheduler import conf, placement  # noqa: F401 - fixtures

VCPU, MEMORY = 4, 2048
ASK = {"VCPU": 2, "MEMORY_MB": 512}


async def make_providers(placement, count):
    providers = []
    for index in range(count):
        made = await placement.http.post("/resource_providers", json={"name": f"host{index}"})
        assert made.status_code == 200, made.text
        provider = made.json()
        response = await placement.put(f"/resource_providers/{provider['uuid']}/inventories", json={
            "resource_provider_generation": provider["generation"],
            "inventories": {"VCPU": {"total": VCPU}, "MEMORY_MB": {"total": MEMORY}}})
        assert response.status_code == 200, response.text
        generation = response.json()["resource_provider_generation"]
        if index % 2:
            await placement.put("/traits/CUSTOM_GOLD")
            response = await placement.put(f"/resource_providers/{provider['uuid']}/traits", json={
                "resource_provider_generation": generation, "traits": ["CUSTOM_GOLD"]})
            assert response.status_code == 200, response.text
        providers.append(provider["uuid"])
    return providers


async def candidates(placement, required=None):
    params = {"resources": ",".join(f"{rc}:{n}" for rc, n in sorted(ASK.items()))}
    if required:
        params["required"] = required
    response = await placement.get("/allocation_candidates", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    found = {next(iter(r["allocations"])) for r in body["allocation_requests"]}
    used = {rp: {rc: s["resources"][rc]["used"] for rc in s["resources"]}
            for rp, s in body["provider_summaries"].items()}
    return found, used


async def test_candidates_follow_each_claim_release_and_capacity_change(placement):
    providers = await make_providers(placement, 6)
    gold = set(providers[1::2])
    totals = {rp: {"VCPU": VCPU, "MEMORY_MB": MEMORY} for rp in providers}
    held: dict[str, tuple[str, dict]] = {}   # consumer -> (provider, resources)
    rng = random.Random(7)
    await candidates(placement)   # the index is built: what follows changes usage only

    def expected():
        used = {rp: {"VCPU": 0, "MEMORY_MB": 0} for rp in providers}
        for rp, resources in held.values():
            for rc, amount in resources.items():
                used[rp][rc] += amount
        fits = {rp for rp in providers if all(totals[rp][rc] - used[rp][rc] >= n for rc, n in ASK.items())}
        return fits, used

    patched = 0
    for step in range(60):
        action = rng.random()
        if action < 0.6 or not held:
            rp = rng.choice(providers)
            resources = {"VCPU": rng.choice([1, 2]), "MEMORY_MB": rng.choice([256, 512, 1024])}
            consumer = str(uuid.uuid4())
            response = await placement.put(f"/allocations/{consumer}", json={
                "allocations": {rp: {"resources": resources}}, "project_id": "p", "user_id": "u",
                "consumer_generation": None})
            if response.status_code == 204:
                held[consumer] = (rp, resources)
            else:   # full: refused, as Placement must
                assert response.status_code == 409, response.text
        elif action < 0.9:
            consumer = rng.choice(sorted(held))
            response = await placement.http.delete(f"/allocations/{consumer}")
            assert response.status_code == 204, response.text
            del held[consumer]
        else:   # more memory on one host (an operator's inventory change)
            rp = rng.choice(providers)
            current = (await placement.get(f"/resource_providers/{rp}/inventories")).json()
            totals[rp]["MEMORY_MB"] += 512
            response = await placement.put(f"/resource_providers/{rp}/inventories", json={
                "resource_provider_generation": current["resource_provider_generation"],
                "inventories": {"VCPU": {"total": totals[rp]["VCPU"]},
                                "MEMORY_MB": {"total": totals[rp]["MEMORY_MB"]}}})
            assert response.status_code == 200, response.text
        fits, used = expected()
        found, summaries = await candidates(placement)
        assert found == fits, f"step {step}"
        assert {rp: summaries[rp] for rp in found} == {rp: used[rp] for rp in found}
        assert (await candidates(placement, "CUSTOM_GOLD"))[0] == fits & gold
        assert (await candidates(placement, "!CUSTOM_GOLD"))[0] == fits - gold
        patched += any("positions" in index.view.memo for index in capacity._indexes.values())
    assert patched > 30   # the views were patched, not rebuilt (else this test checks nothing new)
