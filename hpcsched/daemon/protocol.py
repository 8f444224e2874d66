"""The socket protocol: one JSON request per connection, one JSON response, newline-terminated.

Requests are ``{"op": NAME, "args": {...}}``; responses ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": MESSAGE, "kind": KIND}``. A request larger than ``MAX_REQUEST_BYTES`` or
not this shape is refused and the connection closed (F5). The caller's identity is never read
from the request: it comes from the kernel (SO_PEERCRED).
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any

MAX_REQUEST_BYTES = 1024 * 1024
OPS = frozenset({"ping", "run", "plan", "status", "events", "cancel", "resize", "rebalance", "log_path", "shutdown"})


class ProtocolError(ValueError):
    pass


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode_request(data: bytes, ops: Set[str] = OPS) -> tuple[str, dict[str, Any]]:
    if len(data) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"request is not JSON: {e}") from None
    except RecursionError:  # json nests a Python call per level: "[[[[..." of 1 MiB
        raise ProtocolError("request is nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("request must be an object with a string 'op'")
    op = message["op"]
    if op not in ops:
        raise ProtocolError(f"unknown operation {op!r}")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be an object")
    return op, args


def decode_response(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"daemon answered with something that is not JSON: {e}") from None
    if not isinstance(message, dict) or "ok" not in message:
        raise ProtocolError("daemon answered without 'ok'")
    return message
