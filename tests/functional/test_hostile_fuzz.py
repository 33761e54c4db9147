"""The hostile-input fuzzer (tests/hostile_fuzz.py) against all six APIs of a cloud of its own, for a
bounded number of examples: no 5xx, every request answered, no traceback in the log.

Its own cloud, because the fuzzer's admin writes (flavors, quotas, services, deletions) would change
what the other functional tests find. benchmarks/fuzz.py runs the same for much longer.
"""
from __future__ import annotations

import shutil

import pytest

from tests import hostile_fuzz
from tests.cloud import new_cloud

EXAMPLES = 500


@pytest.fixture(scope="module")
def fuzzed_cloud():
    cloud = new_cloud(hosts=1, config=hostile_fuzz.CLOUD_CONFIG)
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_hostile_requests_to_every_api_get_no_5xx_and_leave_no_traceback(fuzzed_cloud):
    target = hostile_fuzz.Target(roots=hostile_fuzz.roots(fuzzed_cloud.urls),
                                 tokens={"admin": fuzzed_cloud.token(), "member": fuzzed_cloud.token("kilonova-demo")})
    hostile_fuzz.harvest_ids(target)
    hostile_fuzz.add_seeds(target)
    outcomes = hostile_fuzz.run(target, EXAMPLES, derandomize=True)
    assert len(outcomes) == EXAMPLES
    failures = [outcome for outcome in outcomes if hostile_fuzz.failed(outcome)]
    assert not failures, "\n".join(f"{o.method} {o.url} -> {o.status}: {o.detail}" for o in failures[:20])
    # Every API was reached, and past authentication and validation too.
    assert {o.service for o in outcomes if o.status is not None and o.status < 300} == set(hostile_fuzz.SERVICES)
    log = "".join(fuzzed_cloud.output)
    assert "Traceback" not in log, log[-4000:]
