"""router/inference_proto: the checked-in generated module matches its .proto."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from router.inference_proto import grpc_predict_v2_pb2

PROTO_DIR = Path(grpc_predict_v2_pb2.__file__).parent


def test_generated_messages_are_those_of_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "set.pb"
    status = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}", "grpc_predict_v2.proto"]
    )
    assert status == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(compiled)  # a descriptor set carries them; generated code does not
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(
        grpc_predict_v2_pb2.DESCRIPTOR.serialized_pb
    )
    assert compiled == checked_in, "regenerate: see the command in grpc_predict_v2.proto"


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    messages = list(file.message_type)
    while messages:  # bounded: each nested message is visited once
        message = messages.pop()
        for field in message.field:
            field.ClearField("json_name")
        messages.extend(message.nested_type)
