"""Runtime selection as KServe does it: a table of the rules, then properties over random sets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_controller.planning.runtime_selection import (
    Runtime,
    RuntimeSelectionError,
    Scope,
    select_runtime,
    supports_model,
    supports_protocol,
)
from schemas.inference_service import ModelSpec, ProtocolVersion
from schemas.serving_runtime import ServingRuntimeSpec


def model(name: str = "sklearn", version: str | None = None, **extra: Any) -> ModelSpec:
    fmt: dict[str, Any] = {"name": name}
    if version is not None:
        fmt["version"] = version
    return ModelSpec.model_validate({"modelFormat": fmt, **extra})


def runtime(
    name: str,
    formats: list[dict[str, Any]],
    scope: Scope = Scope.CLUSTER,
    **spec: Any,
) -> Runtime:
    body = {"supportedModelFormats": formats, "containers": [{"name": "c", "image": "i"}], **spec}
    return Runtime(name, scope, ServingRuntimeSpec.model_validate(body))


SK_AUTO = {"name": "sklearn", "version": "1", "autoSelect": True}

CASES = [
    pytest.param(model(), [runtime("a", [SK_AUTO])], "a", id="single-match"),
    pytest.param(
        model(),
        [runtime("cl", [SK_AUTO]), runtime("ns", [SK_AUTO], Scope.NAMESPACE)],
        "ns",
        id="namespace-before-cluster",
    ),
    pytest.param(
        model(),
        [
            runtime("low", [{**SK_AUTO, "priority": 1}]),
            runtime("high", [{**SK_AUTO, "priority": 5}]),
            runtime("unset", [SK_AUTO]),
        ],
        "high",
        id="highest-priority",
    ),
    pytest.param(
        model(),
        [runtime("b", [SK_AUTO]), runtime("a", [SK_AUTO])],
        "a",
        id="ties-by-name",
    ),
    pytest.param(
        model(),
        [runtime("off", [SK_AUTO], disabled=True), runtime("on", [SK_AUTO])],
        "on",
        id="disabled-skipped",
    ),
    pytest.param(
        model(),
        [runtime("mm", [SK_AUTO], multiModel=True), runtime("sm", [SK_AUTO])],
        "sm",
        id="multi-model-skipped",
    ),
    pytest.param(
        model(),
        [runtime("manual", [{"name": "sklearn"}]), runtime("auto", [SK_AUTO])],
        "auto",
        id="autoselect-required",
    ),
    pytest.param(
        model(version="2"),
        [runtime("v1", [SK_AUTO]), runtime("v2", [{**SK_AUTO, "version": "2"}])],
        "v2",
        id="version-must-match",
    ),
    pytest.param(
        model(protocolVersion="v2"),
        [runtime("v1only", [SK_AUTO], protocolVersions=["v1"]), runtime("both", [SK_AUTO])],
        "both",
        id="protocol-filter-empty-list-means-any",
    ),
    pytest.param(
        model(runtime="manual"),
        [runtime("manual", [{"name": "sklearn"}]), runtime("auto", [SK_AUTO])],
        "manual",
        id="explicit-runtime-needs-no-autoselect",
    ),
]


@pytest.mark.parametrize(("wanted", "runtimes", "expected"), CASES)
def test_selection_rules(wanted: ModelSpec, runtimes: list[Runtime], expected: str) -> None:
    assert select_runtime(wanted, runtimes).name == expected


@pytest.mark.parametrize(
    ("wanted", "runtimes", "message"),
    [
        pytest.param(model("xgboost"), [runtime("a", [SK_AUTO])], "'xgboost'", id="no-format"),
        pytest.param(model(runtime="nope"), [runtime("a", [SK_AUTO])], "does not exist", id="gone"),
        pytest.param(
            model(runtime="a"), [runtime("a", [SK_AUTO], disabled=True)], "disabled", id="disabled"
        ),
        pytest.param(
            model(runtime="a", protocolVersion="v2"),
            [runtime("a", [SK_AUTO], protocolVersions=["v1"])],
            "protocol v2",
            id="explicit-protocol",
        ),
        pytest.param(
            model("onnx", runtime="a"), [runtime("a", [SK_AUTO])], "'onnx'", id="explicit-format"
        ),
    ],
)
def test_selection_errors_name_the_reason(
    wanted: ModelSpec, runtimes: list[Runtime], message: str
) -> None:
    with pytest.raises(RuntimeSelectionError, match=message):
        select_runtime(wanted, runtimes)


FORMATS = ["sklearn", "xgboost", "onnx"]

formats = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(FORMATS)},
        optional={
            "version": st.sampled_from(["1", "2"]),
            "autoSelect": st.booleans(),
            "priority": st.integers(1, 3),
        },
    ),
    max_size=3,
)
runtime_sets = st.lists(
    st.builds(
        runtime,
        name=st.sampled_from(["a", "b", "c", "d"]),
        formats=formats,
        scope=st.sampled_from(list(Scope)),
        disabled=st.booleans(),
        multiModel=st.booleans(),
        protocolVersions=st.lists(st.sampled_from(["v1", "v2"]), max_size=2, unique=True),
    ),
    max_size=6,
    unique_by=lambda r: (r.scope, r.name),
)
models = st.builds(
    model,
    name=st.sampled_from(FORMATS),
    version=st.none() | st.sampled_from(["1", "2"]),
    protocolVersion=st.sampled_from(["v1", "v2"]),
)


def eligible(r: Runtime, m: ModelSpec) -> bool:
    protocol = m.protocol_version or ProtocolVersion.V1
    return (
        not r.spec.disabled
        and not r.spec.multi_model
        and supports_model(r.spec, m, explicit=False)
        and supports_protocol(r.spec, protocol)
    )


def priority(r: Runtime, m: ModelSpec) -> int:
    for f in r.spec.supported_model_formats:
        if f.name == m.model_format.name:
            return f.priority or 0
    return 0


@settings(derandomize=True, max_examples=300)
@given(models, runtime_sets, st.randoms(use_true_random=False))
def test_selection_properties(m: ModelSpec, runtimes: list[Runtime], rng: Any) -> None:
    candidates = [r for r in runtimes if eligible(r, m)]
    if not candidates:
        with pytest.raises(RuntimeSelectionError, match=m.model_format.name):
            select_runtime(m, runtimes)
        return
    chosen = select_runtime(m, runtimes)
    # It is one KServe could run, from the namespace when the namespace offers any ...
    assert eligible(chosen, m)
    if any(r.scope is Scope.NAMESPACE for r in candidates):
        assert chosen.scope is Scope.NAMESPACE
    # ... no candidate of its scope outranks it by priority ...
    same_scope = [r for r in candidates if r.scope is chosen.scope]
    assert priority(chosen, m) == max(priority(r, m) for r in same_scope)
    # ... and the answer does not depend on the order runtimes are listed in.
    shuffled = list(runtimes)
    rng.shuffle(shuffled)
    assert select_runtime(m, shuffled) == chosen
