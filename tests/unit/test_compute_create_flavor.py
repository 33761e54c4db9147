"""The flavor a server create records: same snapshot and visibility as the flavors module gives."""
from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.compute.api.create import _flavor_snapshot
from kilonova.compute.db import flavors
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture

ADMIN = RequestContext(user_id="a", project_id="admin-project", roles=["admin", "member"])
MEMBER = RequestContext(user_id="u", project_id="p1", roles=["member"])
OUTSIDER = RequestContext(user_id="o", project_id="p2", roles=["member"])


def _expected(session, flavorid, ctx):
    try:
        return flavors.snapshot(flavors.get_by_flavorid(session, flavorid, project_id=ctx.project_id,
                                                        is_admin=ctx.is_admin))
    except NotFound:
        return None


def test_snapshot_and_visibility_match_the_flavors_module(stub):
    def prepare(session):
        flavors.create(session, {"name": "private", "flavorid": "priv", "vcpus": 2, "memory_mb": 256,
                                 "root_gb": 1, "is_public": False, "description": "d"})
        flavors.set_extra_specs(session, "priv", {"hw:cpu_policy": "dedicated", "trait:CUSTOM_X": "required"})
        flavors.add_access(session, "priv", "p1")
    stub.api_db.run_sync(prepare)

    def compare(session):
        seen = {}
        for ctx in (ADMIN, MEMBER, OUTSIDER):
            for flavorid in ("1", "priv", "nope"):
                got = _flavor_snapshot(session, ctx, flavorid)
                assert got == _expected(session, flavorid, ctx), (ctx.project_id, flavorid)
                seen[(ctx.project_id, flavorid)] = got
        return seen
    seen = stub.api_db.run_sync(compare, write=False)
    assert seen[("p1", "priv")]["extra_specs"] == {"hw:cpu_policy": "dedicated", "trait:CUSTOM_X": "required"}
    assert seen[("p2", "priv")] is None and seen[("admin-project", "priv")]["vcpus"] == 2
    assert seen[("p2", "1")]["name"] == "m1.tiny" and seen[("p1", "nope")] is None
