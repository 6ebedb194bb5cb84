"""Kubernetes CustomResourceDefinitions generated from the pydantic models.

Owns the translation from pydantic's JSON Schema (2020-12) to the *structural* OpenAPI v3 schema
an `apiextensions.k8s.io/v1` CRD needs, and the CRDs checked in under `config/crd/`. Callers: a
developer after changing a model (`python -m schemas.crd config/crd`), CI through
`tests/unit/test_crd.py` (byte-identical regeneration), and `--check` for scripts.

Two flavours, two directories. `config/crd/kserve/` holds the `serving.kserve.io` CRDs in
KServe's own shape, so installing them over KServe's (or KServe's over them) damages nothing:
InferGraph's extensions are left out (schemas.graph marks them), a field KServe types more
narrowly than we do gets KServe's type, and no value bound KServe lacks is added (our own
validation still applies it); `tests/properties/test_kserve_differential.py` proves the
compatibility against KServe's published CRDs and Go types. `config/crd/infergraph/` holds
`infergraph.dev` InferenceGraph: KServe's spec plus the extensions, with every bound.

The models stay the single source of truth: nothing here restates a field. Constructs that a
structural schema cannot express (recursive models, unions of several object types, `oneOf`)
raise `CrdError` instead of being approximated, so a model change that needs a decision is
noticed when the CRDs are regenerated rather than on a cluster.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from schemas.base import JsonObject
from schemas.graph import (
    EXTENSION_KEY,
    INFERGRAPH_GROUP,
    KSERVE_GROUP,
    KSERVE_SINCE_KEY,
    KSERVE_TYPE_KEY,
    InferenceGraphSpec,
    InferenceGraphStatus,
)
from schemas.inference_service import InferenceServiceSpec, InferenceServiceStatus
from schemas.serving_runtime import ServingRuntimeSpec

GROUP = KSERVE_GROUP
KUSTOMIZATION = "kustomization.yaml"
KSERVE_DIR = "kserve"  # the serving.kserve.io CRDs (standalone install only)
INFERGRAPH_DIR = "infergraph"  # the infergraph.dev CRD (every install)
REGENERATE = "python -m schemas.crd config/crd"
# On every CRD we generate: `infergraph install` replaces a serving.kserve.io CRD only if it
# carries this (or when forced), so KServe's own are never overwritten by accident.
PART_OF = {"app.kubernetes.io/part-of": "infergraph"}
HEADER = f"# Generated from the pydantic models in schemas/ by `{REGENERATE}`; do not edit.\n"

Scope = Literal["Namespaced", "Cluster"]
# "kserve": KServe's field set and looseness; "infergraph": everything our models say.
Flavour = Literal["kserve", "infergraph"]

# The models' markers (schemas.graph), carried through the conversion and then consumed.
_MARKERS = frozenset({EXTENSION_KEY, KSERVE_TYPE_KEY, KSERVE_SINCE_KEY})
# Value bounds KServe's CRDs do not declare: our models enforce them (as KServe's webhook
# enforces its own), but the API server must not refuse what KServe's CRD accepts.
_BOUNDS = frozenset(
    {
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)

# Keywords pydantic emits that a CRD must not carry: `default` would make the API server inject
# values the models leave unset, and titles are pydantic's restatement of field names.
_DROPPED = frozenset({"title", "default", "examples", "deprecated", "$schema"})
# Validation keywords whose meaning is the same in JSON Schema and OpenAPI v3, in output order.
_COPIED = (
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
# Everything `_convert_plain` understands; any other keyword is a model construct to decide on.
_KNOWN = frozenset(
    {
        "description",
        "type",
        "const",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "uniqueItems",
        "exclusiveMinimum",
        "exclusiveMaximum",
        *_COPIED,
    }
)
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    # bool before int: True is an int to Python but a boolean to JSON.
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
)
_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


class CrdError(ValueError):
    """A model construct that a Kubernetes structural schema cannot express."""


def openapi_schema(model: type[BaseModel], flavour: Flavour = "infergraph") -> JsonObject:
    """The structural OpenAPI v3 schema of `model`, as a CRD's `openAPIV3Schema` nests it."""
    raw = model.model_json_schema(by_alias=True)
    defs: Mapping[str, Any] = raw.get("$defs", {})
    body = {key: value for key, value in raw.items() if key != "$defs"}
    converted = _convert(body, defs, model.__name__, ())
    return _kserve_view(converted) if flavour == "kserve" else _without_markers(converted)


def _without_markers(node: JsonObject) -> JsonObject:
    out: JsonObject = {}
    for key, value in node.items():
        if key in _MARKERS:
            continue
        if key == "properties":
            out[key] = {name: _without_markers(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _without_markers(value)
        elif key == "anyOf":
            out[key] = [_without_markers(option) for option in value]
        else:
            out[key] = value
    return out


def _kserve_view(node: JsonObject) -> JsonObject:
    """`node` as KServe's CRD has it: no extensions, KServe's types, no bounds of ours."""
    out: JsonObject = {}
    for key, value in node.items():
        if key in _MARKERS or key in _BOUNDS:
            continue
        if key == "properties":
            properties: JsonObject = {}
            for name, child in value.items():
                if child.get(EXTENSION_KEY):
                    continue
                if KSERVE_TYPE_KEY in child:
                    narrowed: JsonObject = {}
                    if "description" in child:
                        narrowed["description"] = child["description"]
                    narrowed["type"] = child[KSERVE_TYPE_KEY]
                    properties[name] = narrowed
                else:
                    properties[name] = _kserve_view(child)
            out[key] = properties
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _kserve_view(value)
        elif key == "anyOf":
            out[key] = [_kserve_view(option) for option in value]
        else:
            out[key] = value
    return out


def _convert(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> JsonObject:
    markers = {key: value for key, value in node.items() if key in _MARKERS}
    if markers:
        # Converted without them, then put back for the flavour views to read.
        rest = {key: value for key, value in node.items() if key not in _MARKERS}
        return {**_convert(rest, defs, path, refs), **markers}
    if "$ref" in node:
        ref = node["$ref"]
        name = ref.removeprefix("#/$defs/")
        if name not in defs:
            raise CrdError(f"{path}: unresolvable reference {ref!r}")
        if name in refs:
            # Inlining is the only way to drop $ref, and a recursive model never bottoms out.
            raise CrdError(f"{path}: recursive model {name} cannot be inlined into a CRD")
        # The referring node's own keywords (a field's description) win over the definition's.
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return _convert({**defs[name], **siblings}, defs, path, (*refs, name))
    if "allOf" in node:
        parts = node["allOf"]
        if len(parts) != 1:
            raise CrdError(f"{path}: allOf with {len(parts)} schemas has no structural form")
        rest = {key: value for key, value in node.items() if key != "allOf"}
        return _convert({**parts[0], **rest}, defs, path, refs)
    if "anyOf" in node:
        return _convert_any_of(node, defs, path, refs)
    if "oneOf" in node or "not" in node:
        raise CrdError(f"{path}: oneOf/not have no structural form")
    return _convert_plain(node, defs, path, refs)


def _convert_any_of(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> JsonObject:
    options: list[Mapping[str, Any]] = node["anyOf"]
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    non_null = [option for option in options if option.get("type") != "null"]
    nullable = len(non_null) < len(options)
    if len(non_null) == 1:
        # `X | None`: OpenAPI v3.0 has no null type, only the `nullable` flag on X.
        converted = _convert({**non_null[0], **rest}, defs, path, refs)
    elif sorted(option.get("type", "") for option in non_null) == ["integer", "string"]:
        # The one union Kubernetes models natively (IntOrString); anyOf is allowed beside it.
        converted = {}
        if "description" in rest:
            converted["description"] = rest["description"]
        converted["x-kubernetes-int-or-string"] = True
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    else:
        # Any other union (e.g. `data`: a string or an object template) is checked by our own
        # validation; the API server keeps the value as given. Such a node may omit `type`.
        converted = {}
        if "description" in rest:
            converted["description"] = rest["description"]
        converted["x-kubernetes-preserve-unknown-fields"] = True
        return converted
    if nullable:
        converted = _with_nullable(converted)
    return converted


def _with_nullable(schema: JsonObject) -> JsonObject:
    # Placed right after what it qualifies (the enum, else the type) so the YAML reads naturally.
    anchor = "enum" if "enum" in schema else "type"
    out: JsonObject = {}
    for key, value in schema.items():
        out[key] = value
        if key == anchor:
            out["nullable"] = True
    out.setdefault("nullable", True)
    return out


def _json_type(value: object, path: str) -> str:
    for python_type, json_type in _JSON_TYPES:
        if isinstance(value, python_type):
            return json_type
    raise CrdError(f"{path}: enum value {value!r} is not a JSON scalar")


def _convert_plain(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> JsonObject:
    unknown = sorted(set(node) - _KNOWN - _DROPPED)
    if unknown:
        raise CrdError(f"{path}: no CRD translation for JSON Schema keyword(s) {unknown}")
    enum: list[Any] | None = None
    if "const" in node:
        enum = [node["const"]]
    elif "enum" in node:
        enum = list(node["enum"])
    schema_type = node.get("type")
    nullable = False
    if isinstance(schema_type, list):
        # pydantic writes `X | None` as anyOf, but a hand-written json_schema_extra may not.
        types = [t for t in schema_type if t != "null"]
        nullable = len(types) < len(schema_type)
        if len(types) != 1:
            raise CrdError(f"{path}: type {schema_type} has no structural form")
        schema_type = types[0]
    if schema_type is None and enum:
        enum_types = {_json_type(value, path) for value in enum}
        if len(enum_types) != 1:
            raise CrdError(f"{path}: enum mixes types {sorted(enum_types)}")
        schema_type = enum_types.pop()

    out: JsonObject = {}
    if "description" in node:
        out["description"] = node["description"]
    if schema_type is None:
        if set(node) - _DROPPED - {"description"}:
            raise CrdError(f"{path}: a constrained schema without a type has no structural form")
        # `Any`: the one untyped node a structural schema allows keeps whatever it is given.
        out["x-kubernetes-preserve-unknown-fields"] = True
        return out
    out["type"] = schema_type
    if enum is not None:
        out["enum"] = enum
    if nullable:
        out["nullable"] = True
    for key in _COPIED:
        if key in node:
            out[key] = node[key]
    # JSON Schema 2020-12 writes exclusive bounds as numbers; OpenAPI v3.0 as a flag on the bound.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:
            out[bound] = node[exclusive]
            out[exclusive] = True
    if schema_type == "array":
        _convert_array(node, out, defs, path, refs)
    elif schema_type == "object":
        _convert_object(node, out, defs, path, refs)
    elif node.get("uniqueItems"):
        raise CrdError(f"{path}: uniqueItems on a {schema_type}")
    return out


def _convert_array(
    node: Mapping[str, Any],
    out: JsonObject,
    defs: Mapping[str, Any],
    path: str,
    refs: tuple[str, ...],
) -> None:
    items = _convert(node.get("items", {}), defs, f"{path}[]", refs)
    out["items"] = items
    if node.get("uniqueItems"):
        # The API server forbids uniqueItems (quadratic to check); a set-typed list is its
        # replacement, and Kubernetes allows that only for scalar items.
        if items.get("type") not in _SCALAR_TYPES:
            raise CrdError(f"{path}: a set of non-scalar items has no structural form")
        out["x-kubernetes-list-type"] = "set"


def _convert_object(
    node: Mapping[str, Any],
    out: JsonObject,
    defs: Mapping[str, Any],
    path: str,
    refs: tuple[str, ...],
) -> None:
    properties: Mapping[str, Any] | None = node.get("properties")
    extra = node.get("additionalProperties")
    if properties is not None:
        out["properties"] = {
            name: _convert(child, defs, f"{path}.{name}", refs)
            for name, child in properties.items()
        }
        if node.get("required"):
            out["required"] = list(node["required"])
    if isinstance(extra, Mapping):
        if properties:
            raise CrdError(f"{path}: properties and a typed additionalProperties cannot mix")
        out["additionalProperties"] = _convert(extra, defs, f"{path}.*", refs)
    elif extra is True or (extra is None and properties is None):
        # A free-form object (dict[str, Any], extra="allow"): without this the API server
        # would prune every key it was not told about.
        out["x-kubernetes-preserve-unknown-fields"] = True
    # additionalProperties: false (extra="forbid") is left out: Kubernetes rejects it, and
    # pruning unknown fields (or kubectl's strict field validation) has the same effect.


def crd(
    kind: str,
    plural: str,
    singular: str,
    short_names: Sequence[str],
    group: str,
    version: str,
    scope: Scope,
    spec_model: type[BaseModel],
    status_model: type[BaseModel] | None,
    printer_columns: Sequence[JsonObject] = (),
) -> JsonObject:
    """A complete `apiextensions.k8s.io/v1` CustomResourceDefinition with one served version.

    The `serving.kserve.io` group gets the "kserve" flavour. Status keeps fields it does not
    declare (x-kubernetes-preserve-unknown-fields): whichever controller runs the object, ours
    or KServe's, writes it, and a newer KServe's status fields must survive.
    """
    flavour: Flavour = "kserve" if group == KSERVE_GROUP else "infergraph"
    status: JsonObject = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if status_model is not None:
        status = openapi_schema(status_model, flavour)
    names: JsonObject = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": singular,
    }
    if short_names:
        names["shortNames"] = list(short_names)
    version_entry: JsonObject = {"name": version, "served": True, "storage": True}
    if printer_columns:
        version_entry["additionalPrinterColumns"] = [dict(column) for column in printer_columns]
    version_entry["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "The versioned schema of this representation of an object.",
                    "type": "string",
                },
                "kind": {
                    "description": "The REST resource this object represents.",
                    "type": "string",
                },
                # Kubernetes validates ObjectMeta itself and forbids a CRD from describing it.
                "metadata": {"type": "object"},
                "spec": openapi_schema(spec_model, flavour),
                "status": status,
            },
        }
    }
    if flavour == "infergraph":
        version_entry["schema"]["openAPIV3Schema"]["required"] = ["spec"]
    version_entry["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": dict(PART_OF)},
        "spec": {
            "group": group,
            "names": names,
            "scope": scope,
            "versions": [version_entry],
        },
    }


def _column(name: str, json_path: str, column_type: str) -> JsonObject:
    return {"name": name, "type": column_type, "jsonPath": json_path}


# The columns KServe's own CRDs print, where our models carry the field.
_AGE = _column("Age", ".metadata.creationTimestamp", "date")
_URL_READY = (
    _column("URL", ".status.url", "string"),
    _column("Ready", ".status.conditions[?(@.type=='Ready')].status", "string"),
    _AGE,
)
_RUNTIME_COLUMNS = (
    _column("Disabled", ".spec.disabled", "boolean"),
    _column("ModelType", ".spec.supportedModelFormats[*].name", "string"),
    _column("Containers", ".spec.containers[*].name", "string"),
    _AGE,
)


def all_crds() -> dict[str, JsonObject]:
    """Every CRD InferGraph ships, by its path under config/crd."""
    ours = crd(
        "InferenceGraph",
        "inferencegraphs",
        "inferencegraph",
        # "ig" is KServe's; two CRDs sharing a short name make `kubectl get ig` ambiguous.
        ["infergraph"],
        INFERGRAPH_GROUP,
        "v1alpha1",
        "Namespaced",
        InferenceGraphSpec,
        InferenceGraphStatus,
        _URL_READY,
    )
    kserve = (
        crd(
            "InferenceGraph",
            "inferencegraphs",
            "inferencegraph",
            ["ig"],
            GROUP,
            "v1alpha1",
            "Namespaced",
            InferenceGraphSpec,
            InferenceGraphStatus,
            _URL_READY,
        ),
        crd(
            "InferenceService",
            "inferenceservices",
            "inferenceservice",
            ["isvc"],
            GROUP,
            "v1beta1",
            "Namespaced",
            InferenceServiceSpec,
            InferenceServiceStatus,
            _URL_READY,
        ),
        crd(
            "ServingRuntime",
            "servingruntimes",
            "servingruntime",
            [],
            GROUP,
            "v1alpha1",
            "Namespaced",
            ServingRuntimeSpec,
            None,
            _RUNTIME_COLUMNS,
        ),
        crd(
            "ClusterServingRuntime",
            "clusterservingruntimes",
            "clusterservingruntime",
            [],
            GROUP,
            "v1alpha1",
            "Cluster",
            ServingRuntimeSpec,
            None,
            _RUNTIME_COLUMNS,
        ),
    )
    out = {f"{KSERVE_DIR}/{GROUP}_{c['spec']['names']['plural']}.yaml": c for c in kserve}
    out[f"{INFERGRAPH_DIR}/{INFERGRAPH_GROUP}_inferencegraphs.yaml"] = ours
    return out


class _Dumper(yaml.SafeDumper):
    """Never writes `&id001` anchors: a CRD reader (and diff) should see every node spelled out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: JsonObject) -> str:
    # width: long descriptions fold at a fixed column, so the bytes never depend on the platform.
    text = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + text


def _kustomization(resources: Sequence[str]) -> str:
    return _dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(resources),
        }
    )


def render_all() -> dict[str, str]:
    """Path under config/crd → YAML text of every CRD, plus a kustomization per directory
    (and one at the top listing both directories: the standalone install's CRDs)."""
    crds = all_crds()
    files = {name: _dump(document) for name, document in crds.items()}
    for directory in (KSERVE_DIR, INFERGRAPH_DIR):
        names = [name.split("/", 1)[1] for name in crds if name.startswith(f"{directory}/")]
        files[f"{directory}/{KUSTOMIZATION}"] = _kustomization(names)
    files[KUSTOMIZATION] = _kustomization([KSERVE_DIR, INFERGRAPH_DIR])
    return files


def stale_files(directory: Path) -> list[str]:
    """The generated files that are missing from `directory` or differ from a fresh render."""
    stale = []
    for name, text in render_all().items():
        target = directory / name
        if not target.is_file() or target.read_bytes() != text.encode():
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Write the CRDs into a directory, or with `--check` report (exit 1) those that are stale."""
    parser = argparse.ArgumentParser(prog="python -m schemas.crd", description=__doc__)
    parser.add_argument("directory", type=Path, help="where the CRD files live (config/crd)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing stale files"
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if args.check:
        stale = stale_files(directory)
        for name in stale:
            print(f"stale: {directory / name}", file=sys.stderr)
        if stale:
            print(f"regenerate with `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    for name, text in render_all().items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Bytes, not text mode: the checked-in files must not depend on the platform's newline.
        target.write_bytes(text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
