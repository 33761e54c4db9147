"""A member of a project of its own, for tests whose quotas or counts must not meet other tests' servers."""
from __future__ import annotations


def member_of_new_project(cloud, name: str):
    """(admin connection, the new project, a connection of its member): the project ``name`` made, with a user
    ``<name>-user`` holding the member role there (made once per cloud)."""
    import openstack

    admin = cloud.sdk()
    project = admin.identity.find_project(name, domain_id="default")
    if project is None:
        project = admin.identity.create_project(name=name, domain_id="default")
        user = admin.identity.create_user(name=f"{name}-user", password=f"{name}-pw", domain_id="default",
                                          default_project_id=project.id)
        admin.identity.assign_project_role_to_user(project, user, admin.identity.find_role("member"))
    conn = openstack.connect(auth_url=cloud.auth()["auth_url"], username=f"{name}-user", password=f"{name}-pw",
                             project_name=name, user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne")
    return admin, project, conn
