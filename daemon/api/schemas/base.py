"""The base of every response model, and the page envelope of list routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, create_model


class ResponseModel(BaseModel):
    """A response body: every property listed (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


_PAGES: dict[type[BaseModel], type[ResponseModel]] = {}


def page_of(item: type[BaseModel]) -> type[ResponseModel]:
    """The ``{"items": [...], "next_cursor": ...}`` envelope of ``item`` (one class per
    item model, named ``<Item>Page``)."""
    if item not in _PAGES:
        fields: dict[str, Any] = {
            "items": (list[item], ...),  # type: ignore[valid-type]
            "next_cursor": (str | None, ...),
        }
        _PAGES[item] = create_model(
            f"{item.__name__.removesuffix('View')}Page",
            __base__=ResponseModel,
            __doc__=f"A page of {item.__name__}; pass next_cursor as cursor for the next.",
            **fields,
        )
    return _PAGES[item]
