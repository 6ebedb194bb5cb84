"""Open Inference Protocol tensors: KServe's REST v2 JSON form <-> the gRPC v2 messages. Pure.

`router.grpc_server` turns a client's ModelInferRequest into the JSON the graph reads
(conditions, `data` paths, REST steps) and the graph's answer into a ModelInferResponse;
`router.grpc_calls` turns a step's JSON body into a ModelInferRequest and the model's
ModelInferResponse into JSON. A JSON tensor is `{"name", "datatype", "shape", "parameters"?,
"data"}` with `data` a flat row-major list (nested lists are accepted and flattened).

The JSON form is exact for every datatype but two cases JSON cannot spell, which take a
documented spelling: a float that is NaN or infinite is the string "NaN", "Infinity" or
"-Infinity" (as protobuf's own JSON mapping writes them), and a BYTES tensor with an element
that is not UTF-8 has all its elements in base64 with the tensor parameter
`content_type: "base64"` (MLServer's convention). Both are read back. Gone through JSON, a
NaN's payload bits are not kept; a message that passes through the graph untouched is sent on
as it came (`TensorJSON`), bit for bit.

Every error is a TensorError whose text names the tensor ("input 'x': ...").
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from router.inference_proto.grpc_predict_v2_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
BASE64 = "base64"  # the `content_type` parameter value of a BYTES tensor spelled in base64
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class TensorError(ValueError):
    """A tensor that cannot be converted; the text names it and what is wrong."""


class TensorJSON(bytes):
    """JSON bytes of a v2 body, carrying the protobuf message they were made from.

    The graph reads the JSON; a gRPC step given this very body sends `message` instead of
    re-encoding the JSON, so a tensor that passes through untouched arrives bit for bit.
    """

    message: ModelInferRequest | ModelInferResponse

    def __new__(cls, data: bytes, message: ModelInferRequest | ModelInferResponse) -> TensorJSON:
        made = super().__new__(cls, data)
        made.message = message
        return made


@dataclass(frozen=True, slots=True)
class _Type:
    """One v2 datatype: its little-endian struct code and how it looks in typed contents."""

    code: str  # struct format character; "" for BYTES, "H" for BF16's raw 16 bits
    contents: str | None  # the InferTensorContents field; None: raw contents only (FP16, BF16)
    check: Callable[[Any], Any]  # a JSON element -> the value to pack; raises ValueError


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"expected an integer in [{low}, {high}]")
        return value

    return check


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("expected true or false")
    return value


def _floating(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise ValueError('expected a number (or "NaN", "Infinity", "-Infinity")')


def _text(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.encode()


TYPES: dict[str, _Type] = {
    "BOOL": _Type("?", "bool_contents", _boolean),
    "UINT8": _Type("B", "uint_contents", _integer(0, 2**8 - 1)),
    "UINT16": _Type("H", "uint_contents", _integer(0, 2**16 - 1)),
    "UINT32": _Type("I", "uint_contents", _integer(0, 2**32 - 1)),
    "UINT64": _Type("Q", "uint64_contents", _integer(0, UINT64_MAX)),
    "INT8": _Type("b", "int_contents", _integer(-(2**7), 2**7 - 1)),
    "INT16": _Type("h", "int_contents", _integer(-(2**15), 2**15 - 1)),
    "INT32": _Type("i", "int_contents", _integer(-(2**31), 2**31 - 1)),
    "INT64": _Type("q", "int64_contents", _integer(INT64_MIN, INT64_MAX)),
    "FP16": _Type("e", None, _floating),
    "BF16": _Type("H", None, _floating),
    "FP32": _Type("f", "fp32_contents", _floating),
    "FP64": _Type("d", "fp64_contents", _floating),
    "BYTES": _Type("", "bytes_contents", _text),
}
_FLOATS = frozenset({"FP16", "BF16", "FP32", "FP64"})


# --- messages -> JSON ---------------------------------------------------------------------


def request_to_json(request: ModelInferRequest) -> dict[str, Any]:
    """The REST v2 form of a client's request (no `model_name`: REST carries it in the path)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise TensorError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "when used, it holds one entry per input"
        )
    body: dict[str, Any] = {}
    if request.id:
        body["id"] = request.id
    if request.parameters:
        body["parameters"] = _parameters_to_json(request.parameters, "request parameters")
    body["inputs"] = [
        _tensor_to_json(
            "input", t.name, t.datatype, t.shape, t.parameters, t.contents, raw[i] if raw else None
        )
        for i, t in enumerate(request.inputs)
    ]
    if request.outputs:
        body["outputs"] = [
            {"name": o.name}
            | (
                {"parameters": _parameters_to_json(o.parameters, f"output '{o.name}' parameters")}
                if o.parameters
                else {}
            )
            for o in request.outputs
        ]
    return body


def response_to_json(response: ModelInferResponse) -> dict[str, Any]:
    """The REST v2 form of a model's answer."""
    raw = response.raw_output_contents
    if raw and len(raw) != len(response.outputs):
        raise TensorError(
            f"raw_output_contents has {len(raw)} entries for {len(response.outputs)} outputs"
        )
    body: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        body["model_version"] = response.model_version
    if response.id:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = _parameters_to_json(response.parameters, "response parameters")
    body["outputs"] = [
        _tensor_to_json(
            "output", t.name, t.datatype, t.shape, t.parameters, t.contents, raw[i] if raw else None
        )
        for i, t in enumerate(response.outputs)
    ]
    return body


def request_json_bytes(request: ModelInferRequest) -> TensorJSON:
    return TensorJSON(orjson.dumps(request_to_json(request)), request)


def _tensor_to_json(
    role: str,
    name: str,
    datatype: str,
    shape: Sequence[int],
    parameters: Mapping[str, InferParameter],
    contents: InferTensorContents,
    raw: bytes | None,
) -> dict[str, Any]:
    label = f"{role} '{name}'"
    kind = TYPES.get(datatype)
    if kind is None:
        raise TensorError(f"{label}: datatype '{datatype}' is not a v2 datatype ({_known()})")
    count = _count(label, shape)
    params = _parameters_to_json(parameters, f"{label} parameters") if parameters else {}
    if raw is not None:
        if _typed(contents):
            raise TensorError(f"{label}: data both in contents and in raw contents")
        data = _unpack(label, datatype, kind, raw, count)
    else:
        if kind.contents is None:
            raise TensorError(f"{label}: {datatype} data can only be sent as raw contents")
        data = list(getattr(contents, kind.contents))
        if len(data) != count:
            raise TensorError(
                f"{label}: shape {list(shape)} holds {count} elements, "
                f"but {kind.contents} has {len(data)}"
            )
    if datatype == "BYTES":
        try:
            data = [element.decode() for element in data]
        except UnicodeDecodeError:
            data = [base64.b64encode(element).decode() for element in data]
            params["content_type"] = BASE64
    elif datatype in _FLOATS and not all(map(math.isfinite, data)):
        data = [_spell_float(x) for x in data]
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(shape)}
    if params:
        tensor["parameters"] = params
    tensor["data"] = data
    return tensor


def _spell_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _unpack(label: str, datatype: str, kind: _Type, raw: bytes, count: int) -> list[Any]:
    if datatype == "BYTES":
        return _unpack_bytes(label, raw, count)
    size = struct.calcsize(kind.code)
    if len(raw) != count * size:
        raise TensorError(
            f"{label}: raw contents hold {len(raw)} bytes; {count} {datatype} elements "
            f"take {count * size}"
        )
    values = list(struct.unpack(f"<{count}{kind.code}", raw))
    if datatype == "BF16":
        # bfloat16 is the upper half of an IEEE float32: widen, then read as float32.
        widened = struct.pack(f"<{count}I", *(bits << 16 for bits in values))
        return list(struct.unpack(f"<{count}f", widened))
    return values


def _unpack_bytes(label: str, raw: bytes, count: int) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):  # bounded: every pass consumes at least the 4-byte length
        if len(raw) - offset < 4:
            raise TensorError(f"{label}: raw BYTES contents end inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if len(raw) - offset < length:
            raise TensorError(
                f"{label}: raw BYTES element {len(elements)} declares {length} bytes, "
                f"{len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise TensorError(f"{label}: shape holds {count} elements, raw contents {len(elements)}")
    return elements


def _typed(contents: InferTensorContents) -> bool:
    return any(len(getattr(contents, field)) for field in _CONTENT_FIELDS)


_CONTENT_FIELDS = tuple(dict.fromkeys(t.contents for t in TYPES.values() if t.contents))


def _count(label: str, shape: Sequence[int]) -> int:
    if any(dim < 0 for dim in shape):
        raise TensorError(f"{label}: shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def _parameters_to_json(parameters: Mapping[str, InferParameter], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise TensorError(f"{what}: '{key}' has no value")
        out[key] = getattr(parameter, choice)
    return out


# --- JSON -> messages ---------------------------------------------------------------------


def json_to_request(body: Any, model_name: str) -> ModelInferRequest:
    """A ModelInferRequest for `model_name` from a REST v2 request body; raw contents for all
    inputs (FP16 and BF16 have no typed contents, and the protocol allows raw for all or none).
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise TensorError(
            "a gRPC v2 model needs a v2 inference request: a JSON object with 'inputs', "
            f"got {_preview(body)}"
        )
    request = ModelInferRequest(model_name=model_name)
    if body.get("id") is not None:
        request.id = _string("request 'id'", body["id"])
    _parameters_from_json(request.parameters, body.get("parameters"), "request parameters")
    for index, tensor in enumerate(body["inputs"]):
        name, datatype, shape, params, raw = _tensor_from_json("input", index, tensor)
        entry = request.inputs.add(name=name, datatype=datatype, shape=shape)
        _parameters_from_json(entry.parameters, params, f"input '{name}' parameters")
        request.raw_input_contents.append(raw)
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise TensorError(f"'outputs' must be a list, got {_preview(outputs)}")
        for index, wanted in enumerate(outputs):
            if not isinstance(wanted, dict) or not isinstance(wanted.get("name"), str):
                raise TensorError(f"outputs[{index}] needs a 'name', got {_preview(wanted)}")
            out = request.outputs.add(name=wanted["name"])
            _parameters_from_json(
                out.parameters, wanted.get("parameters"), f"output '{wanted['name']}' parameters"
            )
    return request


def json_to_response(body: Any) -> ModelInferResponse:
    """A ModelInferResponse from a REST v2 answer; raw contents for all outputs."""
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise TensorError(
            f"a v2 inference response is a JSON object with 'outputs', got {_preview(body)}"
        )
    response = ModelInferResponse()
    for field in ("model_name", "model_version", "id"):
        if body.get(field) is not None:
            setattr(response, field, _string(f"'{field}'", body[field]))
    _parameters_from_json(response.parameters, body.get("parameters"), "response parameters")
    for index, tensor in enumerate(body["outputs"]):
        name, datatype, shape, params, raw = _tensor_from_json("output", index, tensor)
        entry = response.outputs.add(name=name, datatype=datatype, shape=shape)
        _parameters_from_json(entry.parameters, params, f"output '{name}' parameters")
        response.raw_output_contents.append(raw)
    return response


def _tensor_from_json(role: str, index: int, tensor: Any) -> tuple[str, str, list[int], Any, bytes]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise TensorError(f"{role}s[{index}] needs a 'name', got {_preview(tensor)}")
    name = tensor["name"]
    label = f"{role} '{name}'"
    datatype = tensor.get("datatype")
    kind = TYPES.get(datatype) if isinstance(datatype, str) else None
    if kind is None or not isinstance(datatype, str):
        raise TensorError(f"{label}: datatype {datatype!r} is not a v2 datatype ({_known()})")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise TensorError(f"{label}: shape must be a list of non-negative integers, got {shape!r}")
    if "data" not in tensor:
        raise TensorError(f"{label}: no 'data'")
    data = _flatten(tensor["data"])
    count = math.prod(shape)
    if len(data) != count:
        raise TensorError(
            f"{label}: shape {shape} holds {count} elements, but data has {len(data)}"
        )
    params = tensor.get("parameters")
    base64_spelled = isinstance(params, dict) and params.get("content_type") == BASE64
    if datatype == "BYTES" and base64_spelled:
        assert isinstance(params, dict)
        params = {k: v for k, v in params.items() if k != "content_type"} or None
    return name, datatype, shape, params, _pack(label, datatype, kind, data, base64_spelled)


def _pack(label: str, datatype: str, kind: _Type, data: list[Any], base64_spelled: bool) -> bytes:
    values: list[Any] = []
    for position, element in enumerate(data):
        try:
            if base64_spelled and datatype == "BYTES":
                values.append(_base64(element))
            else:
                values.append(kind.check(element))
        except ValueError as error:
            raise TensorError(
                f"{label}: element {position} is {_preview(element)}, {error} for {datatype}"
            ) from None
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in values)
    if datatype == "BF16":
        return b"".join(_bf16(label, position, v) for position, v in enumerate(values))
    try:
        return struct.pack(f"<{len(values)}{kind.code}", *values)
    except (OverflowError, struct.error) as error:
        raise TensorError(f"{label}: a value does not fit {datatype}: {error}") from None


def _bf16(label: str, position: int, value: float) -> bytes:
    if math.isnan(value):
        return struct.pack("<H", 0x7FC0)
    try:
        (bits,) = struct.unpack("<I", struct.pack("<f", value))
    except OverflowError:
        raise TensorError(f"{label}: element {position} ({value}) does not fit BF16") from None
    # Round to nearest, ties to even, on the 16 bits dropped; exact for values that are BF16.
    bits += 0x7FFF + ((bits >> 16) & 1)
    return struct.pack("<H", (bits >> 16) & 0xFFFF)


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string (content_type base64)")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("expected base64 (content_type base64)") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(element, list) for element in data):
        return data
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:  # bounded by the JSON's size: each element is visited once
        element = next(stack[-1], _END)
        if element is _END:
            stack.pop()
        elif isinstance(element, list):
            stack.append(iter(element))
        else:
            flat.append(element)
    return flat


_END: Any = object()


def _parameters_from_json(target: Any, params: Any, what: str) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise TensorError(f"{what} must be an object, got {_preview(params)}")
    for key, value in params.items():
        entry = target[key]
        if type(value) is bool:
            entry.bool_param = value
        elif type(value) is int and INT64_MIN <= value <= INT64_MAX:
            entry.int64_param = value
        elif type(value) is int and 0 <= value <= UINT64_MAX:
            entry.uint64_param = value
        elif type(value) is float:
            entry.double_param = value
        elif isinstance(value, str):
            entry.string_param = value
        else:
            raise TensorError(
                f"{what}: '{key}' is {_preview(value)}; a gRPC parameter is a bool, a 64-bit "
                "integer, a number or a string"
            )


def _string(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TensorError(f"{what} must be a string, got {_preview(value)}")
    return value


def _known() -> str:
    return ", ".join(TYPES)


def _preview(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=repr).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a body nested too deeply
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
