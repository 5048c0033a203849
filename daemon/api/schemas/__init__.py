"""The response models of the HTTP API: what each route answers, as pydantic models.

The routes build their answers as plain dicts (``user_view`` and friends); these models
describe those dicts for the OpenAPI document, and the contract tests check every
response against them. A field added to a view without its model (or the reverse) makes
the contract tests fail: the models forbid extra properties.
"""
