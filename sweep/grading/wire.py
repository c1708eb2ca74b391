"""The grader's pipe protocol: length-prefixed JSON headers, each optionally followed by one raw array.

Nothing a child sends is unpickled or evaluated: the parent reads JSON and the bytes of a float32 array whose
shape the header states, so a solution cannot run code in the grader through its replies.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

import numpy as np

MAX_HEADER = 1 << 20
MAX_ARRAY = 1 << 32
"""Largest array a reply may carry (4 GiB: a batch of 16 images at 4096² in float32)."""


class WireError(Exception):
    """The other side closed the pipe, sent something malformed, or did not answer in time."""


def send(fd: int, header: dict[str, object], array: np.ndarray | None = None) -> None:
    payload = b""
    if array is not None:
        array = np.ascontiguousarray(array, dtype=np.float32)
        header = {**header, "shape": list(array.shape)}
        payload = array.tobytes()
    data = json.dumps(header, allow_nan=False).encode()
    _write_all(fd, struct.pack("<I", len(data)) + data + payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WireError("no answer within the time limit")
        chunk = os.read(fd, min(n, 1 << 24))
        if not chunk:
            raise WireError("the process closed its pipe (it exited or crashed)")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None) -> tuple[dict[str, object], np.ndarray | None]:
    """One message; ``deadline`` is a time.monotonic() value (None: wait as long as it takes)."""
    (length,) = struct.unpack("<I", _read_exactly(fd, 4, deadline))
    if length > MAX_HEADER:
        raise WireError(f"a reply header of {length} bytes (at most {MAX_HEADER})")
    try:
        header = json.loads(_read_exactly(fd, length, deadline))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"a reply that is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("a reply header that is not an object")
    shape = header.get("shape")
    if shape is None:
        return header, None
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
        raise WireError(f"a reply with a malformed array shape {shape!r}")
    nbytes = 4 * int(np.prod(shape, dtype=np.int64))
    if nbytes > MAX_ARRAY:
        raise WireError(f"a reply array of {nbytes} bytes (at most {MAX_ARRAY})")
    array = np.frombuffer(_read_exactly(fd, nbytes, deadline), dtype=np.float32).reshape(shape)
    return header, array
