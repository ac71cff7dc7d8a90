"""Routes of /api/profiles."""

import re

from clown.profiles.manager import ProfileManager
from clown.profiles.schemas import (ALIAS_PATTERN, MessageSchema, ProfileCreatedSchema, ProfileCreateSchema,
                                    ProfileDeleteQuerySchema, ProfileListQuerySchema, ProfileSchema,
                                    ProfileSummarySchema)
from clown.web.base import ApiError, ClownHandler, Op

_ALIAS = re.compile(ALIAS_PATTERN)


def checked_alias(alias: str) -> str:
    """``alias`` from a path, or ApiError 400 (never a path outside the profiles dir)."""
    if not _ALIAS.match(alias):
        raise ApiError(400, f"path field 'alias': must match {ALIAS_PATTERN}")
    return alias


class ProfilesHandler(ClownHandler):
    api = {
        "get": Op("Every profile, optionally of one agent", query=ProfileListQuerySchema,
                  response=ProfileSummarySchema, many=True, errors=(400, 401), tags=["profiles"]),
        "post": Op("Create a profile (the key is stored as a secret, never returned)", body=ProfileCreateSchema,
                   response=ProfileCreatedSchema, errors=(400, 401, 409, 413), tags=["profiles"]),
    }

    def get(self):
        query = self.load_query(ProfileListQuerySchema())
        self.ok(self.ctx.profiles.list_profiles(query["agent"]))

    async def post(self):
        data = self.load_body(ProfileCreateSchema())
        self.ok(await self.ctx.profiles.create(data))


class ProfileHandler(ClownHandler):
    api = {
        "get": Op("One profile", response=ProfileSchema, errors=(400, 401, 404), tags=["profiles"]),
        "delete": Op("Delete a profile, its key and its home (409 while a terminal session of it runs, "
                     "unless force=true)", query=ProfileDeleteQuerySchema, response=MessageSchema,
                     errors=(400, 401, 404, 409), tags=["profiles"]),
    }

    def get(self, alias):
        self.ok(self.ctx.profiles.get(checked_alias(alias)))

    async def delete(self, alias):
        query = self.load_query(ProfileDeleteQuerySchema())
        self.ok(await self.ctx.profiles.delete(checked_alias(alias), query["force"]))


def setup(ctx) -> None:
    ctx.profiles = ProfileManager(ctx)


default_handlers = [
    (r"/api/profiles", ProfilesHandler),
    (r"/api/profiles/(?P<alias>[^/]+)", ProfileHandler),
]
