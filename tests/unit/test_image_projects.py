"""Looking up the admin project through the identity API (shared by the image and network services)."""
import httpx
import pytest

from kilonova.common.projects import ProjectLookupError, project_id_by_name


class FakeServiceClient:
    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = []

    async def get(self, path, **kwargs):
        self.calls.append((path, kwargs.get("params")))
        return self.responses.pop(0)


def answer(status, body):
    return httpx.Response(status, json=body)


async def test_finds_the_project():
    client = FakeServiceClient([answer(200, {"projects": [{"id": "abc", "name": "admin"}]})])
    assert await project_id_by_name(client, "admin") == "abc"
    assert client.calls == [("/v3/projects", {"name": "admin", "domain_id": "default"})]


async def test_retries_while_identity_warms_up_but_not_when_refused():
    client = FakeServiceClient([answer(503, {}), answer(200, {"projects": [{"id": "abc"}]})])
    assert await project_id_by_name(client, "admin", delay=0) == "abc"
    refused = FakeServiceClient([answer(403, {"error": {"message": "no"}})])
    with pytest.raises(ProjectLookupError, match="admin role"):
        await project_id_by_name(refused, "admin", delay=0)
    assert len(refused.calls) == 1
    with pytest.raises(ProjectLookupError, match="no project named"):
        await project_id_by_name(FakeServiceClient([answer(200, {"projects": []})]), "admin")
