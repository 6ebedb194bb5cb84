"""router.tensors: v2 JSON <-> gRPC tensors, exact for every datatype, errors naming the tensor."""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import pytest

from router.inference_proto.grpc_predict_v2_pb2 import ModelInferRequest, ModelInferResponse
from router.tensors import (
    TensorError,
    json_to_request,
    json_to_response,
    request_to_json,
    response_to_json,
)


def _tensor(datatype: str, data: list[Any], **extra: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": datatype, "shape": [len(data)], "data": data, **extra}


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("BOOL", [True, False]),
        ("UINT8", [0, 255]),
        ("UINT16", [0, 65535]),
        ("UINT32", [0, 2**32 - 1]),
        ("UINT64", [0, 2**64 - 1]),
        ("INT8", [-128, 127]),
        ("INT16", [-(2**15), 2**15 - 1]),
        ("INT32", [-(2**31), 2**31 - 1]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("FP16", [1.5, -0.0, 65504.0, 2.0**-24]),
        ("BF16", [1.0, -2.5, 3.3895313892515355e38]),
        ("FP32", [0.10000000149011612, -0.0, 3.4028234663852886e38]),
        ("FP64", [0.1, 1e308, -0.0]),
        ("BYTES", ["text", "", "ünïcode"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_json_request_round_trips_through_the_message(datatype: str, data: list[Any]) -> None:
    body = {"id": "r1", "inputs": [_tensor(datatype, data)]}
    message = ModelInferRequest.FromString(json_to_request(body, "m").SerializeToString())
    assert message.model_name == "m"
    back = request_to_json(message)
    assert back == body
    # -0.0 == 0.0: the sign must survive too.
    assert [math.copysign(1, x) for x in back["inputs"][0]["data"] if isinstance(x, float)] == [
        math.copysign(1, x) for x in data if isinstance(x, float)
    ]


def test_typed_contents_are_read_like_raw_ones() -> None:
    request = ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="a", datatype="INT32", shape=[2, 2])
    tensor.contents.int_contents.extend([1, 2, 3, 4])
    assert request_to_json(request)["inputs"] == [
        {"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    ]


def test_nested_json_data_is_flattened_row_major() -> None:
    body = {
        "inputs": [{"name": "a", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    raw = json_to_request(body, "m").raw_input_contents[0]
    assert struct.unpack("<4d", raw) == (1.0, 2.0, 3.0, 4.0)


def test_non_finite_floats_and_non_utf8_bytes_have_a_json_spelling_read_back() -> None:
    response = ModelInferResponse(model_name="m")
    response.outputs.add(name="f", datatype="FP32", shape=[3])
    response.outputs.add(name="b", datatype="BYTES", shape=[2])
    response.raw_output_contents.append(struct.pack("<3f", math.nan, math.inf, -math.inf))
    response.raw_output_contents.append(b"\x02\x00\x00\x00\xff\xfe\x01\x00\x00\x00a")
    body = response_to_json(response)
    assert body["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity"]
    assert body["outputs"][1]["data"] == ["//4=", "YQ=="]
    assert body["outputs"][1]["parameters"] == {"content_type": "base64"}
    again = json_to_response(body)
    assert again.raw_output_contents[1] == response.raw_output_contents[1]
    assert [math.isnan(x) for x in struct.unpack("<3f", again.raw_output_contents[0])] == [
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            _tensor("FP32", [1.0], shape=[2]),
            "input 'x': shape [2] holds 2 elements, but data has 1",
        ),
        (_tensor("INT8", [300]), "input 'x': element 0 is 300, expected an integer in [-128, 127]"),
        (_tensor("BOOL", [1]), "input 'x': element 0 is 1, expected true or false for BOOL"),
        (_tensor("FP32", ["a"]), "input 'x': element 0 is \"a\", expected a number"),
        (_tensor("FP16", [1e6]), "input 'x': a value does not fit FP16"),
        (_tensor("INT4", [1]), "input 'x': datatype 'INT4' is not a v2 datatype"),
        (_tensor("FP32", [1.0], shape=[-1]), "input 'x': shape must be a list of non-negative"),
    ],
    ids=[
        "shape-mismatch",
        "int-range",
        "bool-type",
        "not-a-number",
        "fp16-range",
        "datatype",
        "neg",
    ],
)
def test_json_that_no_tensor_can_hold_is_an_error_naming_the_input(
    tensor: dict[str, Any], message: str
) -> None:
    with pytest.raises(TensorError, match=re.escape(message)):
        json_to_request({"inputs": [tensor]}, "m")


def test_a_body_without_inputs_is_refused() -> None:
    with pytest.raises(TensorError, match="needs a v2 inference request"):
        json_to_request({"instances": [[1, 2]]}, "m")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00" * 7, "input 'x': raw contents hold 7 bytes; 2 FP32 elements take 8"),
        (b"\x09\x00\x00\x00ab", "input 'x': raw BYTES element 0 declares 9 bytes, 2 remain"),
    ],
    ids=["fixed-size", "bytes-length"],
)
def test_raw_contents_that_do_not_match_the_shape_name_the_input(raw: bytes, message: str) -> None:
    request = ModelInferRequest(model_name="m")
    datatype = "FP32" if len(raw) == 7 else "BYTES"
    request.inputs.add(name="x", datatype=datatype, shape=[2])
    request.raw_input_contents.append(raw)
    with pytest.raises(TensorError, match=re.escape(message)):
        request_to_json(request)


def test_parameters_keep_their_types() -> None:
    body = {
        "parameters": {"b": True, "i": -3, "u": 2**64 - 1, "d": 0.5, "s": "x"},
        "inputs": [_tensor("INT64", [1])],
    }
    assert request_to_json(json_to_request(body, "m"))["parameters"] == body["parameters"]
