import shutil
from pathlib import Path

import pytest

from tests.cloud import new_cloud

TESTS = Path(__file__).parent

# Tests that share one machine-wide resource run on one xdist worker, one after another
# (scripts/test.sh runs the suite with `-n 2 --dist loadgroup`; without xdist the marks do nothing).
# The machine's RabbitMQ: tests/distributed restarts it (test_faults), so nothing else may use it meanwhile.
# libvirtd and the guest image: the real-guest tests set the host up once and check what is left on it.
_SHARED_RESOURCE_GROUPS = {
    "rabbitmq": ["distributed", "unit/test_rpc.py", "unit/test_rpc_rabbit.py", "unit/test_cell_transports.py"],
    "libvirt": ["libvirt"],
}


def _group_of(path: Path) -> str | None:
    relative = path.relative_to(TESTS).as_posix()
    for group, prefixes in _SHARED_RESOURCE_GROUPS.items():
        if any(relative == prefix or relative.startswith(prefix + "/") for prefix in prefixes):
            return group
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = _group_of(Path(item.fspath))
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def cloud():
    """One all-in-one Kilonova for the functional tests of a session (of each xdist worker)."""
    instance = new_cloud(hosts=4, config={"fake_driver": {"fail_spawn_hosts": ""}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)
