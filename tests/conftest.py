import shutil

import pytest

from tests.cloud import SHARED_CLOUD_CONFIG, new_cloud

# Tests that share one machine-wide resource run on one xdist worker, one after another
# (scripts/test.sh runs the suite with `-n 2 --dist loadgroup`).
# libvirtd and the guest image: the real-guest tests set the host up once and check what is left on it.
# (Tests on the machine's RabbitMQ each use vhosts of their own, tests/libvirt/test_real_guest_moves.py too;
# the one that stops its broker has a node of its own: they run anywhere.)
_SHARED_RESOURCE_GROUPS = {
    "libvirt": ["tests/libvirt/"],
}
# Modules (and packages of modules) whose tests share a deployment started for them: each stays on one worker,
# so that its deployment starts once.
_WHOLE_MODULES = "tests/distributed/"
# Modules that start one deployment per database kind (test ids end in [postgresql] or [mysql]): one unit
# of work per kind, so that the two deployments run on both workers at once.
_ONE_UNIT_PER_DATABASE = ("tests/distributed/test_processes.py",)


def shared_resource_group(nodeid: str) -> str | None:
    """The group of a test id (``tests/...py::name``), or None for a test that may run anywhere."""
    path = nodeid.split("::", 1)[0]
    for group, prefixes in _SHARED_RESOURCE_GROUPS.items():
        if any(path == prefix or (prefix.endswith("/") and path.startswith(prefix)) for prefix in prefixes):
            return group
    return None


def scheduling_unit(nodeid: str) -> str:
    """What one worker runs together: a shared-resource group, a whole module or package right under
    ``_WHOLE_MODULES``, or else the test's module (whose module-scoped cloud then starts on one worker only)."""
    path = nodeid.split("::", 1)[0]
    if path in _ONE_UNIT_PER_DATABASE:
        return f"{path}[{'mysql' if nodeid.endswith('[mysql]') else 'postgresql'}]"
    if path.startswith(_WHOLE_MODULES):
        return "/".join(path.split("/")[:3])  # tests/distributed/<module or package>
    return shared_resource_group(nodeid) or path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Load balancing where each shared-resource group, each module or package of ``_WHOLE_MODULES`` and each
    other module is one unit of work (one worker runs it all).

    xdist's own ``xdist_group`` marks do not group anything under pytest 9.2 (xdist renames
    ``item._nodeid``, which pytest no longer reads), so the groups are worked out from the test ids here.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedResourceScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    return SharedResourceScheduling(config, log)


@pytest.fixture(scope="session")
def cloud():
    """One all-in-one Kilonova for the functional tests of a session (of each xdist worker)."""
    instance = new_cloud(hosts=4, config=SHARED_CLOUD_CONFIG)
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)
