"""The base every resource model derives from: camelCase aliases and no unknown fields.

Unknown fields are rejected (a typo like `condtion` must not be silently ignored); the loader
turns pydantic's error into one that names the nearest known field. Kubernetes core types that
we only pass through (resources, affinity, tolerations) stay loosely typed as JSON objects.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Strict
from pydantic.alias_generators import to_camel

JsonObject = dict[str, Any]
# Kubernetes and KServe's Go types reject "50" for an integer and "yes" for a boolean; pydantic
# would quietly coerce them, so scalar fields use strict types (a float field takes integers).
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictNumber = Annotated[float, Strict()]


class Resource(BaseModel):
    """A strict, immutable model whose field names are the camelCase KServe spells."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        # Only the camelCase spelling is accepted on input, as the Kubernetes API does.
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class ObjectMeta(BaseModel):
    """Kubernetes object metadata: the fields we read are typed, the rest pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
