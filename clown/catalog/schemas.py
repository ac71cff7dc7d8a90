"""Schemas of /api/agents, /api/providers, /api/registry and /api/catalog/errors."""

from marshmallow import RAISE, Schema, fields


class AgentSummarySchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    installed = fields.Boolean(required=True)
    version = fields.String(allow_none=True)
    binary_path = fields.String(allow_none=True)
    profile_count = fields.Integer()


class AgentSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    installed = fields.Boolean(required=True)
    version = fields.String(allow_none=True)
    binary = fields.String(metadata={"description": "The program as the manifest names it"})
    binary_path = fields.String(allow_none=True)
    profile_strategy = fields.String(metadata={"description": "config-dir | home-wrapper | none"})
    supports_hooks = fields.Boolean()
    default_model = fields.String(allow_none=True)
    supported_models = fields.List(fields.String())


class ProviderSummarySchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    default_model = fields.String(allow_none=True)


class ProviderSchema(ProviderSummarySchema):
    endpoints = fields.Dict(keys=fields.String(), values=fields.String())
    default_endpoint = fields.String(allow_none=True)
    models = fields.List(fields.String())


class RegistryStatusSchema(Schema):
    channel = fields.String()
    commit = fields.String()
    last_sync = fields.String(allow_none=True)
    cached = fields.Boolean(metadata={"description": "A synced registry is cached and in force "
                                                     "(false: the built-in one is)"})


class RegistrySyncQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    force = fields.Boolean(load_default=False)


class CatalogErrorSchema(Schema):
    kind = fields.String(metadata={"description": "agent | provider | pricing"})
    layer = fields.String(metadata={"description": "built-in | registry | user"})
    file = fields.String()
    field = fields.String(allow_none=True)
    error = fields.String()
