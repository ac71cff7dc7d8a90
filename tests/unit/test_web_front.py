"""The web front in-process (tornado.testing): envelopes and the request gate, no supervisord."""

import json

import tornado.testing

from clown import config
from clown.home import Home
from clown.web.app import make_app
from clown.web.context import Context

TOKEN = "in-process-token-0123456789"


class FrontTest(tornado.testing.AsyncHTTPTestCase):
    toml = ""

    def get_app(self):
        import tempfile
        self.tmp = tempfile.TemporaryDirectory()
        home = Home(self.tmp.name)
        home.ensure()
        with open(home.config_file, "w") as handle:
            handle.write(self.toml)
        resolved = config.load(home.root, environ={})
        self.ctx = Context(home, config.as_namespace(resolved))
        return make_app(self.ctx)

    def tearDown(self):
        super().tearDown()
        self.ctx.close()
        self.tmp.cleanup()

    def call(self, method, path, body=None, headers=None):
        response = self.fetch(path, method=method, body=body, headers=headers or {},
                              allow_nonstandard_methods=True, raise_error=False)
        return response.code, json.loads(response.body) if response.body else None, response.headers


class TestEnvelopes(FrontTest):
    def test_unknown_clown_path_is_404_in_the_clown_envelope(self):
        assert self.call("GET", "/api/profiles/x/y/z")[:2] == (
            404, {"success": False, "error": "No route for /api/profiles/x/y/z"})

    def test_unknown_sessions_path_is_404_in_the_sessions_envelope(self):
        assert self.call("GET", "/api/sessions/a/b/c")[:2] == (
            404, {"error": {"code": "NOT_FOUND", "message": "No route for /api/sessions/a/b/c"}})

    def test_health_is_the_bare_sessions_shape(self):
        assert self.call("GET", "/health")[:2] == (200, {"status": "healthy", "version": "0.1.0"})

    def test_put_on_a_get_route_is_405(self):
        assert self.call("PUT", "/api/logs", body="{}")[:2] == (
            405, {"success": False, "error": "Method PUT is not allowed on /api/logs"})

    def test_declared_length_over_the_cap_is_413(self):
        status, body, _ = self.call("POST", "/api/auth/login", body=b"x" * ((1 << 20) + 1))
        assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"


class TestGate(FrontTest):
    def test_dns_rebinding_host_is_refused(self):
        status, body, _ = self.call("GET", "/health", headers={"Host": "attacker.test"})
        assert (status, body["error"]["code"]) == (403, "FORBIDDEN")

    def test_ipv6_loopback_host_is_accepted(self):
        assert self.call("GET", "/health", headers={"Host": "[::1]:8765"})[0] == 200

    def test_foreign_origin_post_is_refused_and_local_one_passes_the_gate(self):
        status, body, _ = self.call("POST", "/api/auth/logout", body="", headers={"Origin": "http://evil.test"})
        assert status == 403
        status, _, headers = self.call("POST", "/api/auth/logout", body="",
                                       headers={"Origin": "http://127.0.0.1:5173"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"

    def test_preflight_is_204(self):
        status, _, headers = self.call("OPTIONS", "/api/profiles", headers={"Origin": "http://localhost:1234"})
        assert status == 204
        assert headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"


class TestToken(FrontTest):
    toml = f'[server]\ntoken = "{TOKEN}"\n'

    def test_api_needs_the_token_and_health_does_not(self):
        assert self.call("GET", "/health")[0] == 200
        status, body, _ = self.call("GET", "/api/logs")
        assert status == 401 and body["success"] is False
        assert self.call("GET", "/api/logs", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert self.call("GET", "/api/logs", headers={"Cookie": f"clown_session={TOKEN}"})[0] == 200


class TestCrash(FrontTest):
    def get_app(self):
        from clown.web.base import ClownHandler

        class Broken(ClownHandler):
            def get(self):
                raise RuntimeError("secret internals")

        app = super().get_app()
        app.add_handlers(r".*", [(r"/api/broken", Broken)])
        return app

    def test_a_crash_is_500_in_the_envelope_with_no_traceback(self):
        status, body, headers = self.call("GET", "/api/broken")
        assert (status, body) == (500, {"success": False, "error": "Internal server error"})
        assert headers["Content-Type"].startswith("application/json")
