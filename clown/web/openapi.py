"""The OpenAPI 3 document of every route, generated from the handlers' marshmallow schemas.

Each handler describes its methods in ``api = {"get": Op(...), ...}``; routes come from
the same tables the application is built from, so the document cannot drift from them.
"""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from clown import __version__
from clown.web.base import Op, is_sessions_path

_PARAM = re.compile(r"\(\?P<([a-z_]+)>[^)]*\)")

CLOWN_ERROR = {"type": "object", "required": ["success", "error"],
               "properties": {"success": {"type": "boolean", "enum": [False]}, "error": {"type": "string"}}}
SESSIONS_ERROR = {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "object", "required": ["code", "message"],
                                           "properties": {"code": {"type": "string"},
                                                          "message": {"type": "string"}}}}}


def _openapi_path(pattern: str) -> tuple[str, list[str]]:
    names = _PARAM.findall(pattern)
    path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", pattern).rstrip("$")
    return path, names


def build(routes) -> dict:
    spec = APISpec(title="clown", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "The clown daemon's HTTP API: the clown API and the sessions API."})
    spec.components.schema("ClownError", CLOWN_ERROR)
    spec.components.schema("SessionsError", SESSIONS_ERROR)
    for route in routes:
        pattern, handler = route[0], route[1]
        api = getattr(handler, "api", None)
        if not api:
            continue
        path, names = _openapi_path(pattern)
        sessions = is_sessions_path(path.replace("{", "").replace("}", ""))
        error_ref = {"$ref": "#/components/schemas/" + ("SessionsError" if sessions else "ClownError")}
        operations = {}
        for method, op in api.items():
            operations[method] = _operation(op, names, sessions, error_ref)
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(op: Op, names: list[str], sessions: bool, error_ref: dict) -> dict:
    operation = {"summary": op.summary, "parameters": [], "responses": {}}
    if op.tags:
        operation["tags"] = op.tags
    for name in names:
        operation["parameters"].append({"in": "path", "name": name, "required": True, "schema": {"type": "string"}})
    if op.query is not None:
        operation["parameters"].append({"in": "query", "schema": op.query})
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    if op.response is not None:
        inner = {"type": "array", "items": op.response} if op.many else op.response
        if sessions:
            schema = inner
        else:
            schema = {"type": "object", "required": ["success"],
                      "properties": {"success": {"type": "boolean", "enum": [True]}, "data": inner}}
    else:
        schema = {"type": "object", "properties": {"success": {"type": "boolean"}}}
    operation["responses"]["200"] = {"description": "Success", "content": {"application/json": {"schema": schema}}}
    for status in sorted(set(op.errors) | {500}):
        operation["responses"][str(status)] = {"description": _describe(status),
                                               "content": {"application/json": {"schema": error_ref}}}
    return operation


def _describe(status: int) -> str:
    return {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
            405: "Method not allowed", 409: "Conflict", 413: "Body too large", 429: "Limit reached",
            500: "Internal error"}.get(status, "Error")
