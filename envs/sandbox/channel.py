"""The framed channel between the parent and a sandbox child: two pipes, one message each way per
request.

A frame is a 16-byte header (JSON length, binary length: big-endian u64 each), the JSON object, then
the binary part (state bytes travel raw, never as base64). Frames over ``MAX_FRAME`` (256 MiB) are a
protocol error. The parent writes the request and reads the answer in one ``select`` loop with one
deadline, so neither side can deadlock the other (a child that never reads, or writes more than a
pipe holds, or nothing at all, ends at the deadline), and the parent never buffers past the cap.
"""
from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

MAX_FRAME = 256 * 1024 * 1024
_HEADER = struct.Struct(">QQ")


class ChannelError(RuntimeError):
    """The other side broke the protocol, went away, or ran out of time (``timed_out``)."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def encode(message: dict[str, Any], blob: bytes = b"") -> bytes:
    body = json.dumps(message, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
    if len(body) + len(blob) > MAX_FRAME:
        raise ChannelError(f"message of {len(body) + len(blob)} bytes is over the {MAX_FRAME >> 20} MiB cap")
    return _HEADER.pack(len(body), len(blob)) + body + blob


def _decode(header: bytes, payload: bytes) -> tuple[dict[str, Any], bytes]:
    n_json, _ = _HEADER.unpack(header)
    try:
        message = json.loads(payload[:n_json].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ChannelError(f"unreadable message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ChannelError("a message must be a JSON object")
    return message, payload[n_json:]


class ParentEnd:
    """The parent's side: ``request`` sends one frame and returns the one frame that answers it."""

    def __init__(self, write_fd: int, read_fd: int):
        self.write_fd, self.read_fd = write_fd, read_fd
        os.set_blocking(write_fd, False)
        os.set_blocking(read_fd, False)

    def request(self, message: dict[str, Any] | None, blob: bytes = b"",
                timeout: float = 30.0) -> tuple[dict[str, Any], bytes]:
        """Send ``message`` (None: send nothing) and return the next frame from the child."""
        out = memoryview(encode(message, blob) if message is not None else b"")
        deadline = time.monotonic() + timeout
        buf = bytearray()
        need = _HEADER.size
        header = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelError(f"no answer within {timeout:g} s", timed_out=True)
            readable, writable, _ = select.select([self.read_fd], [self.write_fd] if out else [], [], left)
            if writable:
                try:
                    n = os.write(self.write_fd, out[:1 << 16])
                except BrokenPipeError:
                    raise ChannelError("the sandbox process went away") from None
                out = out[n:]
            if readable:
                try:
                    chunk = os.read(self.read_fd, min(1 << 20, need - len(buf)))
                except BlockingIOError:
                    continue
                if not chunk:
                    raise ChannelError("the sandbox process went away")
                buf += chunk
                if len(buf) == need:
                    if not header:
                        header = bytes(buf)
                        n_json, n_blob = _HEADER.unpack(header)
                        if n_json + n_blob > MAX_FRAME:
                            raise ChannelError(f"the sandbox sent a message of {n_json + n_blob} bytes, over the "
                                               f"{MAX_FRAME >> 20} MiB cap")
                        need, buf = n_json + n_blob, bytearray()
                        if need == 0:
                            raise ChannelError("the sandbox sent an empty message")
                    else:
                        if out:
                            raise ChannelError("the sandbox answered before reading the request")
                        return _decode(header, bytes(buf))

    def close(self) -> None:
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildEnd:
    """The child's side: blocking reads of requests, blocking writes of answers."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def _read_exactly(self, n: int) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(self.read_fd, min(1 << 20, n - got))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def receive(self) -> tuple[dict[str, Any], bytes] | None:
        header = self._read_exactly(_HEADER.size)
        if header is None:
            return None
        n_json, n_blob = _HEADER.unpack(header)
        if n_json + n_blob > MAX_FRAME:
            raise ChannelError("request over the cap")
        payload = self._read_exactly(n_json + n_blob)
        if payload is None:
            return None
        return _decode(header, payload)

    def send(self, message: dict[str, Any], blob: bytes = b"") -> None:
        data = memoryview(encode(message, blob))
        while data:
            data = data[os.write(self.write_fd, data):]
