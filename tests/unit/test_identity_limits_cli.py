"""The real ``openstack`` CLI's registered limit and limit commands against the identity app (uvicorn)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.unit.test_identity import PASSWORDS
from tests.unit.test_identity_cli import OPENSTACK, served_identity  # noqa: F401 - fixture


def _documents(output: str) -> list:
    decoder, documents, position = json.JSONDecoder(), [], 0
    while output[position:].strip():
        position += len(output[position:]) - len(output[position:].lstrip())
        document, position = decoder.raw_decode(output, position)
        documents.append(document)
    return documents


@pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")
def test_limit_commands_unmodified(served_identity):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": served_identity, "OS_IDENTITY_API_VERSION": "3", "OS_USERNAME": "admin",
                "OS_PASSWORD": PASSWORDS["admin"], "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"})
    # One CLI process reading the commands from stdin; judged by its output (its exit status is 1 at the end).
    commands = ["registered limit create --service compute --default-limit 10 servers",
                "limit create --project demo --service compute --resource-limit 5 servers",
                "registered limit list --service compute", "limit list --project demo",
                "limit create --project demo --service compute --resource-limit 6 servers",  # a duplicate: 409
                "limit create --project demo --service compute --resource-limit 6 class:VCPU"]  # unregistered: 403
    script = "".join(f"{command} -f json\n" for command in commands)
    proc = subprocess.run([str(OPENSTACK)], input=script, env=env, capture_output=True, text=True, timeout=60)
    registered, limit, registered_list, limit_list = _documents(proc.stdout)
    assert registered["resource_name"] == "servers" and registered["default_limit"] == 10
    assert registered["region_id"] is None
    assert limit["resource_limit"] == 5 and limit["service_id"] == registered["service_id"]
    assert [r["ID"] for r in registered_list] == [registered["id"]]
    assert [x["ID"] for x in limit_list] == [limit["id"]] and limit_list[0]["Resource Limit"] == 5
    assert "Conflict occurred attempting to store limit - Duplicate entry." in proc.stderr
    assert "Unable to create a limit that has no corresponding registered limit." in proc.stderr

    # bad input: a limit below -1, an unknown service; and a member writing at all
    bad = ["registered limit create --service compute --default-limit -5 class:VCPU",
           "registered limit create --service nosuch --default-limit 5 class:VCPU"]
    proc = subprocess.run([str(OPENSTACK)], input="".join(f"{c} -f json\n" for c in bad), env=env,
                          capture_output=True, text=True, timeout=60)
    assert _documents(proc.stdout) == []
    assert "-5 is less than the minimum of -1" in proc.stderr and "BadRequestException: 400" in proc.stderr
    assert "No service with a type, name or ID of 'nosuch' exists." in proc.stderr
    # a member writing at all: refused by the identity service itself (openstacksdk: the CLI cannot even look
    # the service up as a member, as with Keystone)
    import openstack
    demo = openstack.connect(auth_url=served_identity, username="demo", password=PASSWORDS["demo"],
                             project_name="demo", user_domain_name="Default", project_domain_name="Default")
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        demo.identity.create_limit(service_id=registered["service_id"], project_id=limit["project_id"],
                                   resource_name="servers", resource_limit=50)
    assert "You are not authorized to perform the requested action: identity:create_limits." in str(refused.value)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        demo.identity.update_registered_limit(registered["id"], default_limit=50)
    assert [x.id for x in demo.identity.limits()] == [limit["id"]]   # its own project's
