"""InferenceGraph validation by table: what loads, and what fails with which path and message.

Valid graphs are KServe's own examples (dog-breed Sequence, Switch on `modelId`, Ensemble,
Splitter) in both forms the router reads: a whole resource (YAML) and the bare spec
(`--graph-json`). Each invalid case breaks one rule and asserts the exact field path and the key
words of the message. The property test at the end builds random valid graphs, checks they load,
then breaks exactly one field and checks the error names that field.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas.errors import FieldError, SpecError
from schemas.graph import InferenceGraphSpec, RouterType
from schemas.loading import load_documents, load_graph
from schemas.valid_graph import ValidGraph, validate_graph

URL = "http://127.0.0.1:9/x"
DOG = 'predictions.#(label=="dog")'
DOG_DOC_FORM = '[@this].#(predictions.0=="dog")'
MODEL_1 = 'instances.#(modelId=="1")'


def bare(nodes: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"nodes": nodes, **spec}


def node(router: str, *steps: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"routerType": router, "steps": list(steps), **options}


def root(router: str, *steps: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A bare spec whose only node is `root`."""
    return bare({"root": node(router, *steps, **options)})


def resource(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "g"},
        "spec": spec,
        **top,
    }


def as_text(doc: Any) -> str | bytes:
    """Strings are already YAML/JSON text; dicts go in as JSON, as `--graph-json` passes them."""
    return doc if isinstance(doc, str) else orjson.dumps(doc)


def errors_of(doc: Any) -> tuple[FieldError, ...]:
    with pytest.raises(SpecError) as caught:
        load_graph(as_text(doc))
    return caught.value.errors


# ---------------------------------------------------------------------------------------------
# Valid graphs

DOG_BREED_RESOURCE = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: dog-breed-pipeline
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
      - serviceName: cat-dog-classifier
        name: cat_dog_classifier
      - serviceName: dog-breed-classifier
        name: dog_breed_classifier
        data: $request
        condition: "[@this].#(predictions.0==\\"dog\\")"
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {cpu: "1", memory: 1Gi}
"""

DOG_BREED_LABEL_RESOURCE = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: dog-breed-pipeline
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
      - serviceName: cat-dog-classifier
        name: cat_dog_classifier
      - serviceName: dog-breed-classifier
        name: dog_breed_classifier
        data: $response
        condition: 'predictions.#(label=="dog")'
"""

DOG_BREED_BARE = root(
    "Sequence",
    {"serviceName": "cat-dog-classifier", "name": "cat_dog_classifier", "data": "$request"},
    {
        "serviceName": "dog-breed-classifier",
        "name": "dog_breed_classifier",
        "data": "$response",
        "condition": DOG,
    },
)

SWITCH = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: model-switch
spec:
  nodes:
    root:
      routerType: Switch
      steps:
      - serviceName: sklearn-iris
        name: sklearn-iris
        condition: 'instances.#(modelId=="1")'
      - serviceName: xgboost-iris
        name: xgboost-iris
        condition: 'instances.#(modelId=="2")'
"""

ENSEMBLE = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: ensemble-model
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
      - nodeName: ensembleModel
        name: ensembleModel
        data: $request
    ensembleModel:
      routerType: Ensemble
      steps:
      - serviceName: sklearn-iris
        name: sklearn-iris
      - serviceName: xgboost-iris
        name: xgboost-iris
"""

SPLITTER_90_10 = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: splitter-model
spec:
  nodes:
    root:
      routerType: Splitter
      steps:
      - serviceName: sklearn-iris
        name: sklearn-iris
        weight: 90
      - serviceName: xgboost-iris
        name: xgboost-iris
        weight: 10
"""

# (document, root's router type, number of nodes, number of root's steps)
VALID: list[Any] = [
    pytest.param(DOG_BREED_RESOURCE, "Sequence", 1, 2, id="kserve-dog-breed-doc-form-yaml"),
    pytest.param(DOG_BREED_LABEL_RESOURCE, "Sequence", 1, 2, id="dog-breed-label-query-yaml"),
    pytest.param(DOG_BREED_BARE, "Sequence", 1, 2, id="dog-breed-bare-spec-json"),
    pytest.param(
        root("Sequence", {"serviceName": "a", "condition": DOG_DOC_FORM}),
        "Sequence",
        1,
        1,
        id="doc-form-condition-json",
    ),
    pytest.param(SWITCH, "Switch", 1, 2, id="switch-on-model-id-yaml"),
    pytest.param(
        root("Switch", {"serviceUrl": URL, "condition": MODEL_1}),
        "Switch",
        1,
        1,
        id="switch-on-model-id-json",
    ),
    pytest.param(ENSEMBLE, "Sequence", 2, 1, id="ensemble-yaml"),
    pytest.param(SPLITTER_90_10, "Splitter", 1, 2, id="splitter-90-10-yaml"),
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": 100}, {"serviceName": "b", "weight": 0}),
        "Splitter",
        1,
        2,
        id="splitter-100-0-json",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "serviceUrl": "http://a.default.svc/v1/models/a"}),
        "Sequence",
        1,
        1,
        id="service-name-and-url-as-controller-passes-json",
    ),
    pytest.param(
        bare(
            {
                "root": node("Sequence", {"nodeName": "pick"}, {"serviceUrl": URL}),
                "pick": node("Switch", {"nodeName": "split", "condition": MODEL_1}),
                "split": node(
                    "Splitter", {"serviceUrl": URL, "weight": 50}, {"serviceUrl": URL, "weight": 50}
                ),
            }
        ),
        "Sequence",
        3,
        2,
        id="nested-nodes-json",
    ),
]


@pytest.mark.parametrize(("doc", "router_type", "nodes", "steps"), VALID)
def test_valid_graph_loads(doc: Any, router_type: str, nodes: int, steps: int) -> None:
    spec = load_graph(as_text(doc)).spec
    assert spec.nodes["root"].router_type == RouterType(router_type)
    assert len(spec.nodes) == nodes
    assert len(spec.nodes["root"].steps) == steps


def test_dog_breed_keeps_kserve_condition_and_data() -> None:
    spec = load_graph(DOG_BREED_RESOURCE).spec
    second = spec.nodes["root"].steps[1]
    assert second.condition == DOG_DOC_FORM
    assert second.data == "$request"
    assert spec.resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


def test_whole_resource_and_bare_spec_give_the_same_spec() -> None:
    as_resource = yaml.safe_dump(resource(DOG_BREED_BARE))
    assert load_graph(as_resource).spec == load_graph(orjson.dumps(DOG_BREED_BARE)).spec


# (field, value): every spec-level field KServe declares.
SPEC_FIELDS: list[Any] = [
    pytest.param(
        "resources", {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}, id="resources"
    ),
    pytest.param(
        "affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
                    ]
                }
            }
        },
        id="affinity",
    ),
    pytest.param(
        "tolerations",
        [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        id="tolerations",
    ),
    pytest.param("nodeSelector", {"disk": "ssd"}, id="nodeSelector"),
    pytest.param("nodeName", "worker-1", id="nodeName"),
    pytest.param("serviceAccountName", "graph-sa", id="serviceAccountName"),
    pytest.param("timeout", 30, id="timeout"),
    pytest.param(
        "routerTimeouts",
        {"serverRead": 10, "serverWrite": 20, "serverIdle": 30, "serviceClient": 40},
        id="routerTimeouts",
    ),
    pytest.param("minReplicas", 0, id="minReplicas"),
    pytest.param("maxReplicas", 5, id="maxReplicas"),
    pytest.param("scaleTarget", 80, id="scaleTarget"),
    pytest.param("scaleMetric", "concurrency", id="scaleMetric"),
]


@pytest.mark.parametrize(("field", "value"), SPEC_FIELDS)
def test_spec_field_round_trips(field: str, value: Any) -> None:
    doc = {**root("Sequence", {"serviceName": "a"}), field: value}
    spec = load_graph(orjson.dumps(doc)).spec
    assert spec.model_dump(by_alias=True, exclude_none=True) == doc


def test_all_spec_fields_round_trip_at_once() -> None:
    doc: dict[str, Any] = root("Sequence", {"serviceName": "a"})
    for param in SPEC_FIELDS:
        field, value = param.values
        doc[field] = value
    spec = validate_graph(doc).spec
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped == doc
    assert InferenceGraphSpec.model_validate(dumped) == spec
    graph = validate_graph(resource(doc)).resource
    assert graph.model_dump(by_alias=True, exclude_none=True) == resource(doc)


# ---------------------------------------------------------------------------------------------
# Invalid graphs: one rule per case

# (document, [(path, [words in the message])]): every error, with its exact path.
INVALID: list[Any] = [
    pytest.param(
        bare({"main": node("Sequence", {"serviceName": "a"})}),
        [("nodes", ["no node named 'root'", "nodes: main"])],
        id="no-root-bare",
    ),
    pytest.param(
        resource(bare({"main": node("Sequence", {"serviceName": "a"})})),
        [("spec.nodes", ["no node named 'root'", "nodes: main"])],
        id="no-root-resource",
    ),
    pytest.param(bare({}), [("nodes", ["no node named 'root'", "nodes: none"])], id="no-nodes"),
    pytest.param(
        root("Pipeline", {"serviceName": "a"}),
        [
            (
                "nodes.root.routerType",
                ["'Sequence'", "'Switch'", "'Ensemble'", "'Splitter'", "'Pipeline'"],
            )
        ],
        id="bad-router-type",
    ),
    pytest.param(
        root("Sequence"), [("nodes.root.steps", ["at least one step"])], id="node-without-steps"
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a"}, {"name": "orphan"}),
        [("nodes.root.steps[1]", ["no target", "serviceName", "serviceUrl", "nodeName"])],
        id="step-without-target",
    ),
    pytest.param(
        bare(
            {
                "root": node("Sequence", {"nodeName": "next", "serviceName": "a"}),
                "next": node("Sequence", {"serviceName": "b"}),
            }
        ),
        [("nodes.root.steps[0]", ["both nodeName and serviceName", "exactly one"])],
        id="node-name-and-service-name",
    ),
    pytest.param(
        bare(
            {
                "root": node("Sequence", {"nodeName": "next", "serviceUrl": URL}),
                "next": node("Sequence", {"serviceName": "b"}),
            }
        ),
        [("nodes.root.steps[0]", ["both nodeName and serviceUrl", "exactly one"])],
        id="node-name-and-service-url",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a"}, {"nodeName": "nowhere"}),
        [("nodes.root.steps[1].nodeName", ["'nowhere'", "does not exist", "nodes: root"])],
        id="node-name-to-missing-node",
    ),
    pytest.param(
        bare(
            {
                "root": node("Sequence", {"nodeName": "a"}),
                "a": node("Sequence", {"nodeName": "b"}),
                "b": node("Sequence", {"nodeName": "a"}),
            }
        ),
        [("nodes.b.steps[0].nodeName", ["cycle", "a -> b -> a"])],
        id="two-cycle",
    ),
    pytest.param(
        bare(
            {
                "root": node("Sequence", {"nodeName": "a"}),
                "a": node("Sequence", {"serviceName": "x"}, {"nodeName": "a"}),
            }
        ),
        [("nodes.a.steps[1].nodeName", ["cycle", "a -> a"])],
        id="self-cycle",
    ),
    pytest.param(
        root("Sequence", {"nodeName": "root"}),
        [("nodes.root.steps[0].nodeName", ["cycle", "root -> root"])],
        id="root-self-cycle",
    ),
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": 100}, {"serviceName": "b"}),
        [("nodes.root.steps[1].weight", ["Splitter", "needs a weight"])],
        id="splitter-step-without-weight",
    ),
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": -10}, {"serviceName": "b", "weight": 110}),
        [("nodes.root.steps[0].weight", ["greater than or equal to 0", "-10"])],
        id="negative-weight",
    ),
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": 60}, {"serviceName": "b", "weight": 50}),
        [("nodes.root.steps", ["sum to 110, expected 100"])],
        id="weights-sum-to-110",
    ),
    pytest.param(
        resource(root("Splitter", {"serviceName": "a", "weight": 90})),
        [("spec.nodes.root.steps", ["sum to 90, expected 100"])],
        id="weights-sum-to-90-resource",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "weight": 50}),
        [("nodes.root.steps[0].weight", ["only allowed on Splitter", "Sequence"])],
        id="weight-on-sequence-step",
    ),
    pytest.param(
        root("Switch", {"serviceName": "a", "condition": MODEL_1, "weight": 0}),
        [("nodes.root.steps[0].weight", ["only allowed on Splitter", "Switch"])],
        id="weight-on-switch-step",
    ),
    pytest.param(
        root("Ensemble", {"serviceName": "a"}, {"serviceName": "b", "weight": 1}),
        [("nodes.root.steps[1].weight", ["only allowed on Splitter", "Ensemble"])],
        id="weight-on-ensemble-step",
    ),
    pytest.param(
        root(
            "Sequence",
            {"serviceName": "a", "name": "classify"},
            {"serviceName": "b", "name": "classify"},
        ),
        [("nodes.root.steps[1].name", ["'classify'", "already used by steps[0]", "unique"])],
        id="duplicate-step-names",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a"}, {"serviceName": "b", "condition": DOG[:-1]}),
        [("nodes.root.steps[1].condition", ["'predictions.#(label==\"dog\"'", "never closed"])],
        id="condition-unclosed-query",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "condition": ""}),
        [("nodes.root.steps[0].condition", ["empty condition"])],
        id="condition-empty",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "condition": "a..b"}),
        [("nodes.root.steps[0].condition", ["'a..b'", "empty path component"])],
        id="condition-empty-component",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "condition": "jmespath: foo["}),
        [("nodes.root.steps[0].condition", ["JMESPath", "'foo['"])],
        id="condition-bad-jmespath",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "data": "$resp"}),
        [("nodes.root.steps[0].data", ["'$resp'", "$request or $response"])],
        id="data-resp-typo",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "data": {"instances": "$response.predictions[x]"}}),
        [("nodes.root.steps[0].data", ["'$response.predictions[x]'", "cannot read the path"])],
        id="data-template-bad-path",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "condtion": DOG}),
        [
            (
                "nodes.root.steps[0].condtion",
                ["unknown field 'condtion'", "did you mean 'condition'"],
            )
        ],
        id="step-field-typo",
    ),
    pytest.param(
        {"nodess": root("Sequence", {"serviceName": "a"})["nodes"]},
        [
            ("nodes", ["required field is missing"]),
            ("nodess", ["unknown field 'nodess'", "did you mean 'nodes'"]),
        ],
        id="spec-field-typo",
    ),
    pytest.param(
        resource({"nodess": root("Sequence", {"serviceName": "a"})["nodes"]}),
        [
            ("spec.nodes", ["required field is missing"]),
            ("spec.nodess", ["unknown field 'nodess'", "did you mean 'nodes'"]),
        ],
        id="spec-field-typo-resource",
    ),
    pytest.param(
        bare({"root": {"routertype": "Sequence", "steps": [{"serviceName": "a"}]}}),
        [
            ("nodes.root.routerType", ["required field is missing"]),
            ("nodes.root.routertype", ["unknown field 'routertype'", "did you mean 'routerType'"]),
        ],
        id="node-field-typo",
    ),
    pytest.param(
        root("Sequence", {"service_name": "a"}),
        [
            (
                "nodes.root.steps[0].service_name",
                ["unknown field 'service_name'", "did you mean 'serviceName'"],
            )
        ],
        id="snake-case-service-name",
    ),
    pytest.param(
        root("Sequence", {"serviceUrl": "ftp://models/x"}),
        [("nodes.root.steps[0].serviceUrl", ["'ftp://models/x'", "http(s)"])],
        id="service-url-ftp",
    ),
    pytest.param(
        root("Sequence", {"serviceUrl": "127.0.0.1:9/x"}),
        [("nodes.root.steps[0].serviceUrl", ["'127.0.0.1:9/x'", "http(s)"])],
        id="service-url-no-scheme",
    ),
    pytest.param(
        resource(root("Sequence", {"serviceName": "a"}), apiVersion="serving.kserve.io/v1beta1"),
        [("apiVersion", ["'serving.kserve.io/v1alpha1'", "'serving.kserve.io/v1beta1'"])],
        id="wrong-api-version",
    ),
    pytest.param(
        resource(root("Sequence", {"serviceName": "a"}), kind="InferenceService"),
        [("kind", ["'InferenceGraph'", "'InferenceService'"])],
        id="wrong-kind",
    ),
    pytest.param("", [("<document>", ["empty"])], id="empty-document"),
    pytest.param("# only a comment\n---\n", [("<document>", ["empty"])], id="comment-only"),
    pytest.param("nodes: [root\n", [("<document>", ["not valid YAML or JSON"])], id="bad-yaml"),
    pytest.param('{"nodes": {', [("<document>", ["not valid YAML or JSON"])], id="bad-json"),
    pytest.param("- a\n- b\n", [("<document>", ["valid dictionary"])], id="not-a-mapping"),
    pytest.param(
        "nodes: {}\n---\nnodes: {}\n",
        [("<document>", ["expected one InferenceGraph", "found 2 documents"])],
        id="two-documents",
    ),
]


@pytest.mark.parametrize(("doc", "expected"), INVALID)
def test_invalid_graph_names_the_field(doc: Any, expected: list[tuple[str, list[str]]]) -> None:
    errors = errors_of(doc)
    assert sorted(e.path for e in errors) == sorted(path for path, _ in expected), errors
    by_path = {e.path: e.message for e in errors}
    for path, words in expected:
        for word in words:
            assert word in by_path[path], (path, by_path[path])


def test_every_rule_violation_is_reported_at_once() -> None:
    doc = bare(
        {
            "main": node(
                "Splitter",
                {"serviceName": "a", "weight": 60, "name": "s"},
                {"serviceName": "b", "weight": 50, "name": "s"},
            ),
            "other": node(
                "Sequence",
                {"name": "untargeted"},
                {"serviceName": "c", "condition": DOG[:-1], "data": "$resp", "weight": 1},
                {"nodeName": "other"},
            ),
        }
    )
    errors = errors_of(doc)
    assert [e.path for e in errors] == [
        "nodes",
        "nodes.main.steps[1].name",
        "nodes.main.steps",
        "nodes.other.steps[0]",
        "nodes.other.steps[1].weight",
        "nodes.other.steps[1].condition",
        "nodes.other.steps[1].data",
        "nodes.other.steps[2].nodeName",
    ]
    with pytest.raises(SpecError, match=r"^graph\.json: 8 error\(s\)\n"):
        load_graph(orjson.dumps(doc), "graph.json")


def test_every_shape_problem_is_reported_at_once() -> None:
    doc = resource(
        root(
            "Sequence",
            {"serviceName": "a", "condtion": DOG},
            {"service_name": "b"},
            {"serviceName": "c", "weight": -1},
        ),
        kind="Graph",
    )
    doc["spec"]["nodes"]["next"] = node("Fork", {"serviceName": "d"})
    errors = errors_of(doc)
    assert sorted(e.path for e in errors) == [
        "kind",
        "spec.nodes.next.routerType",
        "spec.nodes.root.steps[0].condtion",
        "spec.nodes.root.steps[1].service_name",
        "spec.nodes.root.steps[2].weight",
    ]


MULTI = """\
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: ok}
spec:
  nodes:
    root:
      routerType: Sequence
      steps: [{serviceName: a}]
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: heavy}
spec:
  nodes:
    root:
      routerType: Splitter
      steps: [{serviceName: a, weight: 60}, {serviceName: b, weight: 50}]
---
kind: Pipeline
---
nodes:
  root:
    routerType: Sequence
    steps: [{serviceName: a, condtion: x}]
"""


def test_load_documents_prefixes_errors_with_the_document_index() -> None:
    with pytest.raises(SpecError) as caught:
        load_documents(MULTI, "graphs.yaml")
    got = [(e.path, e.message) for e in caught.value.errors]
    assert [path for path, _ in got] == [
        "spec.nodes.root.steps",
        "kind",
        "nodes.root.steps[0].condtion",
    ]
    assert got[0][1].startswith("document 1: ")
    assert "sum to 110, expected 100" in got[0][1]
    assert got[1][1].startswith("document 2: ")
    assert "unsupported kind 'Pipeline'" in got[1][1]
    assert got[2][1].startswith("document 3: ")
    assert "did you mean 'condition'" in got[2][1]
    assert caught.value.source == "graphs.yaml"


def test_load_documents_returns_every_valid_document() -> None:
    text = MULTI.split("---\n")[0] + "---\n" + SPLITTER_90_10
    docs = load_documents(text, "graphs.yaml")
    assert [d.source for d in docs] == ["graphs.yaml[0]", "graphs.yaml[1]"]
    assert [d.resource.name for d in docs if isinstance(d.resource, ValidGraph)] == [
        "ok",
        "splitter-model",
    ]


# Once gaps, now fixed (strict scalar types, Go's empty-is-unset, document numbering):
# (document, [(path, [words])]) as in INVALID: what KServe's API server or Go router rejects.
KNOWN_GAPS: list[Any] = [
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": "50"}, {"serviceName": "b", "weight": 50}),
        [("nodes.root.steps[0].weight", ["integer"])],
        id="string-weight-coerced",
    ),
    pytest.param(
        root("Splitter", {"serviceName": "a", "weight": True}, {"serviceName": "b", "weight": 99}),
        [("nodes.root.steps[0].weight", ["integer"])],
        id="bool-weight-coerced",
    ),
    pytest.param(
        root("Sequence", {"serviceName": "a", "mapPredictionsToInstances": "yes"}),
        [("nodes.root.steps[0].mapPredictionsToInstances", ["boolean"])],
        id="string-bool-coerced",
    ),
    pytest.param(
        root("Sequence", {"serviceName": ""}),
        [("nodes.root.steps[0]", ["no target"])],
        id="empty-service-name-is-a-target",
    ),
]


@pytest.mark.parametrize(("doc", "expected"), KNOWN_GAPS)
def test_known_gap(doc: Any, expected: list[tuple[str, list[str]]]) -> None:
    test_invalid_graph_names_the_field(doc, expected)


def test_document_index_counts_empty_documents() -> None:
    with pytest.raises(SpecError) as caught:
        load_documents("nodes: {}\n---\n---\nkind: Foo\n")
    assert caught.value.errors[1].message.startswith("document 2: ")


# ---------------------------------------------------------------------------------------------
# Property: random valid graphs load; one corrupted field is reported at its own path

NODE_NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True).filter(lambda n: n != "root"),
    unique=True,
    max_size=5,
)
CONDITIONS = [DOG, DOG_DOC_FORM, MODEL_1, "predictions.0"]
DATA: list[Any] = [
    "$request",
    "$response",
    "$response.predictions[0]",
    {"instances": "$response.predictions"},
]
ROUTER_TYPES = [t.value for t in RouterType]


def partition_100(draw: st.DrawFn, parts: int) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, 100]
    return [b - a for a, b in itertools.pairwise(bounds)]


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Nodes in order root, n1, n2, ...; a step targets the URL or a later node: no cycles."""
    names = ["root", *draw(NODE_NAMES)]
    nodes: dict[str, Any] = {}
    for index, name in enumerate(names):
        router = draw(st.sampled_from(ROUTER_TYPES))
        count = draw(st.integers(1, 4))
        weights = partition_100(draw, count) if router == "Splitter" else [None] * count
        steps = []
        for position, weight in enumerate(weights):
            later = names[index + 1 :]
            step: dict[str, Any] = {}
            if draw(st.booleans()):
                step["name"] = f"s{position}"
            if later and draw(st.booleans()):
                step["nodeName"] = draw(st.sampled_from(later))
            else:
                step["serviceUrl"] = URL
            if weight is not None:
                step["weight"] = weight
            if router in ("Sequence", "Switch") and draw(st.booleans()):
                step["condition"] = draw(st.sampled_from(CONDITIONS))
            if draw(st.booleans()):
                step["data"] = draw(st.sampled_from(DATA))
            steps.append(step)
        nodes[name] = {"routerType": router, "steps": steps}
    return {"nodes": nodes}


# A corruption edits the spec in place and returns (path of the one error, words of its message).
Corruption = Callable[[dict[str, Any], st.DataObject], tuple[str, str]]


def reachable_from_root(nodes: dict[str, Any]) -> list[str]:
    seen, todo = ["root"], ["root"]
    while todo:
        for step in nodes[todo.pop()]["steps"]:
            target = step.get("nodeName")
            if target is not None and target not in seen:
                seen.append(target)
                todo.append(target)
    return seen


def remove_root(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    del spec["nodes"]["root"]  # no step targets root: every edge points to a later node
    return "nodes", "no node named 'root'"


def back_edge_to_root(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    # Every cycle then runs through this edge, and root is the first node on the search's
    # trail, so the step that closes the cycle is always this one.
    nodes = spec["nodes"]
    name = data.draw(st.sampled_from(reachable_from_root(nodes)), label="cycle from")
    steps = nodes[name]["steps"]
    index = data.draw(st.integers(0, len(steps) - 1), label="step")
    step = steps[index]
    step.pop("serviceUrl", None)
    step["nodeName"] = "root"
    return f"nodes.{name}.steps[{index}].nodeName", "-> root"


def _pick_step(
    spec: dict[str, Any], data: st.DataObject, keep: Callable[[dict[str, Any]], bool]
) -> tuple[str, int]:
    candidates = [
        (name, index)
        for name, body in spec["nodes"].items()
        if keep(body)
        for index in range(len(body["steps"]))
    ]
    return data.draw(st.sampled_from(candidates), label="step")


def perturb_splitter_weight(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    name, index = _pick_step(spec, data, lambda n: n["routerType"] == "Splitter")
    step = spec["nodes"][name]["steps"][index]
    delta = data.draw(st.integers(1, 100) | st.integers(-100, -1), label="delta")
    step["weight"] += delta
    if step["weight"] < 0:
        return f"nodes.{name}.steps[{index}].weight", "greater than or equal to 0"
    return f"nodes.{name}.steps", f"sum to {100 + delta}, expected 100"


def weight_on_non_splitter(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    name, index = _pick_step(spec, data, lambda n: n["routerType"] != "Splitter")
    spec["nodes"][name]["steps"][index]["weight"] = data.draw(st.integers(0, 100))
    return f"nodes.{name}.steps[{index}].weight", "only allowed on Splitter"


def duplicate_step_name(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    names = [name for name, body in spec["nodes"].items() if len(body["steps"]) >= 2]
    name = data.draw(st.sampled_from(names), label="node")
    steps = spec["nodes"][name]["steps"]
    first, second = sorted(data.draw(st.permutations(range(len(steps))))[:2])
    steps[first]["name"] = steps[second]["name"] = "dup"  # generated names are s0, s1, ...
    return f"nodes.{name}.steps[{second}].name", f"already used by steps[{first}]"


TYPOS = {
    "name": "nmae",
    "serviceUrl": "serviceUri",
    "nodeName": "nodeNmae",
    "weight": "weigth",
    "condition": "condtion",
    "data": "datta",
}


def typo_in_field(spec: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    name, index = _pick_step(spec, data, lambda n: True)
    step = spec["nodes"][name]["steps"][index]
    if data.draw(st.booleans(), label="node-level"):
        body = spec["nodes"][name]
        body["stepz"] = body.pop("steps")
        return f"nodes.{name}.stepz", "did you mean 'steps'"
    field = data.draw(st.sampled_from([f for f in step if f in TYPOS]), label="field")
    step[TYPOS[field]] = step.pop(field)
    return f"nodes.{name}.steps[{index}].{TYPOS[field]}", f"did you mean '{field}'"


def applicable(spec: dict[str, Any]) -> list[Corruption]:
    """The corruptions that fit `spec`; the ones that need a certain node come first, since
    hypothesis favours the first choices."""
    types = [body["routerType"] for body in spec["nodes"].values()]
    out: list[Corruption] = []
    if "Splitter" in types:
        out.append(perturb_splitter_weight)
    if any(t != "Splitter" for t in types):
        out.append(weight_on_non_splitter)
    if any(len(body["steps"]) >= 2 for body in spec["nodes"].values()):
        out.append(duplicate_step_name)
    return [*out, typo_in_field, back_edge_to_root, remove_root]


@settings(derandomize=True, max_examples=400, deadline=None)
@given(spec=valid_specs(), whole=st.booleans(), data=st.data())
def test_random_graph_valid_then_one_corruption_is_reported(
    spec: dict[str, Any], whole: bool, data: st.DataObject
) -> None:
    # The random specs use InferGraph's extensions, which only our API group admits.
    wrap: Callable[[dict[str, Any]], dict[str, Any]] = (
        (lambda s: resource(s, apiVersion="infergraph.dev/v1alpha1")) if whole else (lambda s: s)
    )
    prefix = "spec." if whole else ""
    loaded = load_graph(orjson.dumps(wrap(spec))).spec
    assert set(loaded.nodes) == set(spec["nodes"])

    broken = copy.deepcopy(spec)
    corrupt = data.draw(st.sampled_from(applicable(spec)), label="corruption")
    event(corrupt.__name__)
    path, words = corrupt(broken, data)
    errors = errors_of(wrap(broken))
    assert [e.path for e in errors] == [prefix + path], errors
    assert words in errors[0].message, errors[0]


# ---------------------------------------------------------------------------------------------
# API groups: extensions only under infergraph.dev/v1alpha1
# ---------------------------------------------------------------------------------------------

USE_OUR_GROUP = "use apiVersion: infergraph.dev/v1alpha1"


@pytest.mark.parametrize(
    ("spec", "path", "field"),
    [
        pytest.param(
            root("Ensemble", {"serviceName": "a"}, aggregation="mean"),
            "spec.nodes.root.aggregation",
            "'aggregation'",
            id="node-aggregation",
        ),
        pytest.param(
            root("Sequence", {"serviceName": "a", "retry": {"maxRetries": 1}}),
            "spec.nodes.root.steps[0].retry",
            "'retry'",
            id="step-retry",
        ),
        pytest.param(
            root("Sequence", {"serviceName": "a", "timeout": 2}),
            "spec.nodes.root.steps[0].timeout",
            "'timeout'",
            id="step-timeout",
        ),
        pytest.param(
            root("Sequence", {"serviceName": "a", "data": {"x": "$request.x"}}),
            "spec.nodes.root.steps[0].data",
            "non-string 'data'",
            id="data-template",
        ),
        pytest.param(
            {**root("Sequence", {"serviceName": "a"}), "conditionLanguage": "jmespath"},
            "spec.conditionLanguage",
            "'conditionLanguage'",
            id="graph-condition-language",
        ),
        pytest.param(
            bare(
                {
                    "root": node(
                        "Splitter",
                        {"serviceName": "a", "weight": 100},
                        {"serviceName": "b", "shadow": True},
                        stickyHeader="X-User",
                    )
                }
            ),
            "spec.nodes.root.steps[1].shadow",
            "'shadow'",
            id="splitter-shadow",
        ),
    ],
)
def test_extension_under_kserves_api_version_is_refused(
    spec: dict[str, Any], path: str, field: str
) -> None:
    errors = errors_of(resource(spec))
    found = [e for e in errors if e.path == path]
    assert found, errors
    assert field in found[0].message
    assert "InferGraph extension" in found[0].message
    assert USE_OUR_GROUP in found[0].message
    # The same graph under our group is valid, and so is its bare spec (the router's input).
    assert load_graph(as_text(resource(spec, apiVersion="infergraph.dev/v1alpha1")))
    assert load_graph(as_text(spec))


def test_every_extension_is_reported_at_once() -> None:
    spec = {
        **root("Ensemble", {"serviceName": "a", "timeout": 1}, aggregation="mean", quorum=1),
        "retry": {"maxRetries": 1},
    }
    paths = {e.path for e in errors_of(resource(spec))}
    assert paths == {
        "spec.retry",
        "spec.nodes.root.aggregation",
        "spec.nodes.root.quorum",
        "spec.nodes.root.steps[0].timeout",
    }


def test_kserve_fields_of_later_versions_stay_in_kserves_group() -> None:
    # routerTimeouts and mapPredictionsToInstances are KServe's own (v0.16.0).
    spec = {
        **root("Sequence", {"serviceName": "a", "mapPredictionsToInstances": True}),
        "routerTimeouts": {"serverRead": 10},
    }
    assert load_graph(as_text(resource(spec)))


def test_unknown_api_group_is_refused_naming_both() -> None:
    errors = errors_of(resource(root("Sequence", {"serviceName": "a"}), apiVersion="x.dev/v1"))
    assert errors[0].path == "apiVersion"
    assert "'serving.kserve.io/v1alpha1'" in errors[0].message
    assert "'infergraph.dev/v1alpha1'" in errors[0].message
