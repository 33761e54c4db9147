import shutil

import pytest

from tests.cloud import new_cloud


@pytest.fixture(scope="session")
def cloud():
    """One all-in-one Kilonova for the functional tests of a session."""
    instance = new_cloud(hosts=4, config={"fake_driver": {"fail_spawn_hosts": ""}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)
