"""The socket protocol refuses anything that is not one small JSON request of a known operation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsched.daemon.protocol import MAX_REQUEST_BYTES, OPS, ProtocolError, decode_request, decode_response, encode


def request_bytes(message: object) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("op", sorted(OPS))
def test_encoded_request_of_every_operation_decodes_to_its_op_and_args(op: str) -> None:
    assert decode_request(encode({"op": op, "args": {"job": 3}})) == (op, {"job": 3})


def test_encoded_message_is_one_newline_terminated_line() -> None:
    data = encode({"op": "ping", "args": {"text": "a\nb"}})
    assert data.endswith(b"\n") and data.count(b"\n") == 1


def test_request_without_args_gets_empty_args() -> None:
    assert decode_request(request_bytes({"op": "ping"})) == ("ping", {})


def test_oversized_request_is_refused_naming_the_limit() -> None:
    data = request_bytes({"op": "run", "args": {"pad": "x" * MAX_REQUEST_BYTES}})
    with pytest.raises(ProtocolError, match=f"larger than {MAX_REQUEST_BYTES} bytes"):
        decode_request(data)


@pytest.mark.parametrize("data", [b"", b"not json", b"{", b"\xff\xfe", b'{"op": "ping"'])
def test_request_that_is_not_json_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_request(data)


@pytest.mark.parametrize("message", [[], "ping", 3, None, {"args": {}}, {"op": 3}, {"op": None}])
def test_request_that_is_not_an_object_with_a_string_op_is_refused(message: object) -> None:
    with pytest.raises(ProtocolError, match="object with a string 'op'"):
        decode_request(request_bytes(message))


@pytest.mark.parametrize("op", ["exec", "PING", "", "shutdown "])
def test_unknown_operation_is_refused_naming_it(op: str) -> None:
    with pytest.raises(ProtocolError, match="unknown operation"):
        decode_request(request_bytes({"op": op}))


@pytest.mark.parametrize("args", [[], "x", 3, None])
def test_args_that_are_not_an_object_are_refused(args: object) -> None:
    with pytest.raises(ProtocolError, match="'args' must be an object"):
        decode_request(request_bytes({"op": "status", "args": args}))


def test_response_round_trips() -> None:
    assert decode_response(encode({"ok": True, "result": [1]})) == {"ok": True, "result": [1]}


@pytest.mark.parametrize("data", [b"", b"garbage", b"[]", b'{"result": 1}'])
def test_malformed_response_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_response(data)


@settings(max_examples=200)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_F5_any_bytes_decode_to_a_request_or_a_protocol_error(data: bytes) -> None:
    try:
        op, args = decode_request(data)
    except ProtocolError:
        return
    assert op in OPS and isinstance(args, dict)


@settings(max_examples=100)
@given(st.dictionaries(st.sampled_from(["op", "args", "x"]),
                       st.none() | st.integers() | st.text(max_size=6) | st.sampled_from(sorted(OPS)) | st.just({})))
def test_F5_any_json_object_decodes_to_a_request_or_a_protocol_error(message: dict[str, object]) -> None:
    try:
        op, args = decode_request(request_bytes(message))
    except ProtocolError:
        return
    assert (op, args) == (message["op"], message.get("args", {}))
