"""Routes of usage: the report and the Claude Code / Codex imports."""

from clown.paths import ClientPathError
from clown.usage.manager import ImportBusy, ImportFailed, UsageManager
from clown.usage.schemas import (ClaudeImportQuerySchema, CodexImportQuerySchema, UsageQuerySchema,
                                 UsageReportSchema)
from clown.web.base import ApiError, ClownHandler, Op


class UsageHandler(ClownHandler):
    api = {"get": Op("Token usage, cost, sessions and runtime for a period", query=UsageQuerySchema,
                     response=UsageReportSchema, errors=(400, 401), tags=["usage"])}

    async def get(self):
        query = self.load_query(UsageQuerySchema())
        self.ok(await self.ctx.usage.report(query["period"], query.get("profile"), query.get("model")))


class _ImportHandler(ClownHandler):
    kind = ""
    field = ""
    default_dir = ""
    schema = None

    async def post(self):
        query = self.load_query(self.schema())
        try:
            directory = self.ctx.usage.resolve_dir(query.get(self.field), self.default_dir, self.field)
        except ClientPathError as exc:
            raise ApiError(400, str(exc))
        try:
            message = await self.ctx.usage.run_import(self.kind, directory)
        except ImportBusy as exc:
            raise ApiError(409, str(exc))
        except ImportFailed as exc:
            raise ApiError(500, f"import failed: {exc}")
        self.ok(message)


class ClaudeImportHandler(_ImportHandler):
    kind, field, default_dir, schema = "claude", "claude_dir", "~/.claude", ClaudeImportQuerySchema
    api = {"post": Op("Import usage from Claude Code transcripts and stats-cache.json", query=ClaudeImportQuerySchema,
                      errors=(400, 401, 409), tags=["usage"])}


class CodexImportHandler(_ImportHandler):
    kind, field, default_dir, schema = "codex", "codex_dir", "~/.codex", CodexImportQuerySchema
    api = {"post": Op("Import usage from Codex rollout files", query=CodexImportQuerySchema,
                      errors=(400, 401, 409), tags=["usage"])}


def setup(ctx) -> None:
    ctx.usage = UsageManager(ctx)
    ctx.on_close(ctx.usage.close)


default_handlers = [
    (r"/api/usage", UsageHandler),
    (r"/api/usage/import-claude", ClaudeImportHandler),
    (r"/api/usage/import-codex", CodexImportHandler),
]
