"""The image service: owns the image database and the filesystem store, serves Glance's v2 API."""
from __future__ import annotations

import logging
from pathlib import Path

from kilonova.common import policy
from kilonova.common.auth import TokenValidator
from kilonova.common.db import Database, migrate
from kilonova.common.projects import ProjectLookupError, identity_service_client, project_id_by_name
from kilonova.common.service import Service, ServiceEnv
from kilonova.image import bootstrap
from kilonova.image.app import create_app
from kilonova.image.models import ImageBase
from kilonova.image.store import FilesystemStore

LOG = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _size_cap(conf) -> int:
    return conf.getint("image", "image_size_cap")


class ImageService(Service):
    name = "image"
    service_type = "image"

    def __init__(self, env: ServiceEnv, validator=None):
        super().__init__(env)
        conf = env.conf
        self.policy = policy.configure(conf, "image")   # read at start: a bad policy file stops it
        self.db = Database.shared(conf.get("image_database", "connection"), name="glance")
        self.store = FilesystemStore(conf.get("glance_store", "filesystem_store_datadir"), _size_cap(conf))
        self.require_image_format_match = conf.getbool("image_format", "require_image_format_match")
        self.validator = validator or TokenValidator(
            env.endpoints.http_client("identity"),
            cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        self.app = create_app(self.validator, self)

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, ImageBase.metadata)
        self.store.prepare()

    async def after_start(self) -> None:
        try:
            owner = await project_id_by_name(identity_service_client(self.conf, self.env.endpoints), "admin")
        except ProjectLookupError as exc:
            LOG.error("the default image %s was not created: %s", bootstrap.DEFAULT_IMAGE_NAME, exc)
            return
        await self.ensure_default_image(owner)

    async def ensure_default_image(self, owner: str) -> dict:
        return await bootstrap.ensure_default_image(self.db, self.store, owner)
