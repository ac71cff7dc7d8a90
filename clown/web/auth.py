"""Sign-in for the web UI: trade the daemon's token for the ``clown_session`` cookie."""

import hmac

from marshmallow import Schema, fields, validate

from clown.web.base import ApiError, Op, SessionsHandler
from clown.web.security import COOKIE


class LoginSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class OkSchema(Schema):
    success = fields.Boolean()


class LoginHandler(SessionsHandler):
    api = {"post": Op("Sign in with the daemon's token; sets the clown_session cookie", body=LoginSchema,
                      response=OkSchema, errors=(400, 401, 403))}

    def needs_auth(self) -> bool:
        return False

    def post(self):
        body = self.load_body(LoginSchema())
        expected = self.ctx.config.server.token
        if expected and not hmac.compare_digest(body["token"].encode(), expected.encode()):
            raise ApiError(401, "That token is not the daemon's token")
        if expected:
            self.set_cookie(COOKIE, expected, httponly=True, samesite="Strict", path="/")
        self.ok({"success": True})


class LogoutHandler(SessionsHandler):
    api = {"post": Op("Sign out: clears the clown_session cookie", response=OkSchema, errors=(403,))}

    def needs_auth(self) -> bool:
        return False

    def post(self):
        self.clear_cookie(COOKIE, path="/")
        self.ok({"success": True})


class AuthStatusHandler(SessionsHandler):
    api = {"get": Op("Whether a token is needed and whether this client has it", response=None, errors=())}

    def needs_auth(self) -> bool:
        return False

    def get(self):
        access = self.ctx.access
        self.ok({"auth_required": bool(access.token),
                 "authenticated": access.token_ok(self.request.headers.get("Authorization"), self.get_cookie(COOKIE))})


default_handlers = [
    (r"/api/auth/login", LoginHandler),
    (r"/api/auth/logout", LogoutHandler),
    (r"/api/auth/status", AuthStatusHandler),
]
