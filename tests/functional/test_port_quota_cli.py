"""The port quota at server create (the real `openstack` CLI, openstacksdk): a 403 from the compute API as
upstream Nova's ("Maximum number of ports exceeded"), and max_count lowered to the servers that fit,
instead of builds failing on their hosts."""
from __future__ import annotations

import openstack
import pytest

from tests import forked_cli
from tests.cloud import client_env, wait_for
from tests.projects import member_of_new_project

PROJECT = "portq"


@pytest.fixture(scope="module")
def member(cloud):
    """A member of a project of its own whose port quota the tests set; its servers deleted afterwards."""
    admin, project, conn = member_of_new_project(cloud, PROJECT)
    yield admin, project, conn
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    wait_for(lambda: not list(conn.compute.servers()), "the servers to go", timeout=60)
    for port in conn.network.ports(project_id=project.id):
        conn.network.delete_port(port)


def test_too_few_free_ports_is_a_403_at_the_api(cloud, member):
    admin, project, conn = member
    private = conn.network.find_network("private")
    admin.network.update_quota(project.id, ports=2)
    conn.network.create_port(network_id=private.id, name="holder")  # one of the two used
    env = {**client_env(), "OS_AUTH_URL": cloud.auth()["auth_url"], "OS_USERNAME": f"{PROJECT}-user",
           "OS_PASSWORD": f"{PROJECT}-pw",
           "OS_PROJECT_NAME": PROJECT, "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
           "OS_REGION_NAME": "RegionOne", "OS_IDENTITY_API_VERSION": "3"}
    refused = forked_cli.run("openstack", ["server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                           "--network", "private", "--min", "2", "--max", "3", "two"], env, 120)
    assert refused.returncode != 0
    assert "403" in refused.stderr and "Maximum number of ports exceeded" in refused.stderr
    assert list(conn.compute.servers()) == []  # nothing recorded, nothing built

    # max_count is lowered to what fits: one server, which gets its port
    made = conn.compute.create_server(name="fits", flavor_id="1", image_id=conn.image.find_image("kilonova-tiny").id,
                                      networks=[{"uuid": private.id}], min_count=1, max_count=3)
    conn.compute.wait_for_server(made, wait=60, interval=0.3)
    assert [s.name for s in conn.compute.servers()] == ["fits"]

    # a project already over its quota is told so
    admin.network.update_quota(project.id, ports=1)
    with pytest.raises(openstack.exceptions.ForbiddenException) as over:
        conn.compute.create_server(name="over", flavor_id="1", image_id=conn.image.find_image("kilonova-tiny").id,
                                   networks=[{"uuid": private.id}])
    assert "The number of defined ports: 2 is over the limit: 1" in str(over.value)
