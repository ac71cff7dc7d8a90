"""Routes of the sessions API: /api/sessions..., /api/credentials. Thin: parse, call, answer."""

from clown.sessions.credentials import credentials_status
from clown.sessions.manager import SessionManager
from clown.sessions.schemas import (AccessModeResultSchema, AccessModeSchema, CreatedSchema, CreateSessionSchema,
                                    CredentialsSchema, DeleteQuerySchema, ListQuerySchema, SessionDetailSchema,
                                    SessionListSchema, SuccessSchema)
from clown.sessions.ws import EventSocketHandler
from clown.web.base import Op, SessionsHandler

_ID = r"(?P<session_id>[^/]+)"


def setup(ctx) -> None:
    ctx.sessions = SessionManager(ctx)
    ctx.startup.append(ctx.sessions.start)
    ctx.on_close(ctx.sessions.close)


class SessionsListHandler(SessionsHandler):
    api = {
        "get": Op("List agent sessions", query=ListQuerySchema, response=SessionListSchema, errors=(400, 401)),
        "post": Op("Create an agent session: a git worktree of repo_path with the agent started in it",
                   body=CreateSessionSchema, response=CreatedSchema, errors=(400, 401, 413, 500)),
    }

    def get(self):
        query = self.load_query(ListQuerySchema())
        self.ok({"sessions": self.ctx.sessions.list(query["include_archived"])})

    async def post(self):
        body = self.load_body(CreateSessionSchema())
        self.ok(await self.ctx.sessions.create(body))


class SessionHandler(SessionsHandler):
    api = {
        "get": Op("One agent session with its prompt and chat history", response=SessionDetailSchema,
                  errors=(401, 404)),
        "delete": Op("Delete an agent session: stop the agent, remove the worktree (the branch stays)",
                     query=DeleteQuerySchema, response=SuccessSchema, errors=(400, 401, 404, 409, 500)),
    }

    async def get(self, session_id):
        self.ok(await self.ctx.sessions.detail(session_id))

    async def delete(self, session_id):
        query = self.load_query(DeleteQuerySchema())
        await self.ctx.sessions.delete(session_id, query["force"])
        self.ok({"success": True})


class ArchiveHandler(SessionsHandler):
    api = {"post": Op("Archive an agent session (hidden from the default list)", response=SuccessSchema,
                      errors=(401, 404))}

    def post(self, session_id):
        self.ctx.sessions.set_archived(session_id, True)
        self.ok({"success": True})


class UnarchiveHandler(SessionsHandler):
    api = {"post": Op("Unarchive an agent session", response=SuccessSchema, errors=(401, 404))}

    def post(self, session_id):
        self.ctx.sessions.set_archived(session_id, False)
        self.ok({"success": True})


class AccessModeHandler(SessionsHandler):
    api = {"put": Op("Change the access mode; a running agent restarts in it, resuming the conversation",
                     body=AccessModeSchema, response=AccessModeResultSchema, errors=(400, 401, 404, 500))}

    async def put(self, session_id):
        body = self.load_body(AccessModeSchema())
        await self.ctx.sessions.set_access_mode(session_id, body["access_mode"])
        self.ok({"success": True, "access_mode": body["access_mode"]})


class RefreshHandler(SessionsHandler):
    api = {"post": Op("Restart the agent resuming its conversation (docker: pull the image, recreate)",
                      response=SuccessSchema, errors=(401, 404, 500))}

    async def post(self, session_id):
        await self.ctx.sessions.refresh(session_id)
        self.ok({"success": True})


class CredentialsHandler(SessionsHandler):
    api = {"get": Op("Which credentials are configured and where from (never their values)",
                     response=CredentialsSchema, errors=(401,))}

    def get(self):
        self.ok({"credentials": credentials_status(self.ctx.store)})


default_handlers = [
    (r"/api/sessions", SessionsListHandler),
    (rf"/api/sessions/{_ID}", SessionHandler),
    (rf"/api/sessions/{_ID}/archive", ArchiveHandler),
    (rf"/api/sessions/{_ID}/unarchive", UnarchiveHandler),
    (rf"/api/sessions/{_ID}/access-mode", AccessModeHandler),
    (rf"/api/sessions/{_ID}/refresh", RefreshHandler),
    (r"/api/credentials", CredentialsHandler),
    (r"/ws", EventSocketHandler),
]
