"""Every message between the core and a shim, and the frame format.

Frames are shim/frames.py's (a 4-byte big-endian length, then a marshal-encoded dict whose
"type" key is the tag). marshal is a builtin, so the lean stub (rt.shim.stub)
speaks it with builtins only; both ends run the same interpreter.
The core decodes each dict into these tagged msgspec Structs, which ignore
unknown fields, so an older shim keeps working with a newer core.
"""
import os
import select
import time

import msgspec

from . import frames

PROTOCOL_VERSION = 1


class Message(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class Hello(Message, tag="hello"):
    version: int
    pid: int


class Run(Message, tag="run"):
    plan: dict


class Child(Message, tag="child"):
    """The container's init process exists; pid is as the host sees it."""
    pid: int


class Ready(Message, tag="ready"):
    """Set up and waiting at the start barrier."""
    pid: int


class IdMap(Message, tag="idmap"):
    """The shim made its user namespace: write /proc/<pid>/uid_map and gid_map, then Resume."""
    pid: int


class Hooks(Message, tag="hooks"):
    """The init has its namespaces and mounts, before pivot_root: run createRuntime hooks now."""
    stage: str


class Resume(Message, tag="resume"):
    """Go on; `state` is the state JSON for the container's own hooks."""
    state: str = ""


class Error(Message, tag="error"):
    reason: str
    kind: str = "error"


AnyMessage = Hello | Run | Child | Ready | IdMap | Hooks | Resume | Error


class ProtocolError(Exception):
    pass


class ShimFailed(ProtocolError):
    """The shim reported an Error message."""

    def __init__(self, reason: str, kind: str):
        super().__init__(reason)
        self.reason, self.kind = reason, kind


class UnexpectedMessage(ProtocolError):
    def __init__(self, expected, got):
        super().__init__(f"shim protocol: expected {expected.__name__}, got {type(got).__name__}")
        self.expected, self.got = expected, got


def encode(msg: Message) -> bytes:
    return frames.pack(msgspec.to_builtins(msg, builtin_types=(bytes, bytearray)))


def decode(payload: bytes) -> Message:
    try:
        return msgspec.convert(frames.unpack(payload), AnyMessage)
    except (ValueError, EOFError, TypeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"shim protocol: bad frame: {e}") from None


class Channel:
    """Blocking, deadline-aware reader/writer over a pair of pipe fds."""

    def __init__(self, rfd: int, wfd: int | None = None):
        self.rfd, self.wfd = rfd, wfd
        self._buf = b""

    def send(self, msg: Message) -> None:
        data = encode(msg)
        while data:
            data = data[os.write(self.wfd, data):]

    def _fill(self, n: int, deadline: float) -> bool:
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("shim protocol: timed out waiting for the shim")
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv(self, timeout: float = 30.0) -> Message | None:
        """The next message, or None at EOF."""
        deadline = time.monotonic() + timeout
        if not self._fill(4, deadline):
            if self._buf:
                raise ProtocolError("shim protocol: truncated frame")
            return None
        n = int.from_bytes(self._buf[:4], "big")
        if not self._fill(4 + n, deadline):
            raise ProtocolError("shim protocol: truncated frame")
        payload, self._buf = self._buf[4:4 + n], self._buf[4 + n:]
        return decode(payload)

    def expect(self, kind: type, timeout: float = 30.0, eof_reason: str = "shim exited early") -> Message:
        """A message of `kind`; an Error raises ShimFailed, EOF raises ProtocolError."""
        msg = self.recv(timeout)
        if msg is None:
            raise ProtocolError(eof_reason)
        if isinstance(msg, Error):
            raise ShimFailed(msg.reason, msg.kind)
        if not isinstance(msg, kind):
            raise UnexpectedMessage(kind if isinstance(kind, type) else kind[0], msg)
        return msg

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = None
