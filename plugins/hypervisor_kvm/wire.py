"""Frames between the host shim and the guest agent, and between rt verbs and the shim.

A frame is a 9-byte header (payload length u32, kind u8, session u32, big-endian) and a
payload: a marshal'ed dict for MSG (version 2, which has no back-references, so that
agent.c reads it too), raw bytes otherwise. Session 0 is the workload, every
`rt exec` gets its own. Builtins only (marshal, os): the guest's Python has no stdlib.
"""
import marshal
import os

MSG, STDIN, STDOUT, STDERR, EOF = range(5)
HEADER = 9
MAX_PAYLOAD = 1 << 20


def frame(kind: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + bytes((kind,)) + sid.to_bytes(4, "big") + payload


def msg(obj: dict, sid: int = 0) -> bytes:
    return frame(MSG, sid, marshal.dumps(obj, 2))


def _u32(data: bytes, at: int) -> int:
    if at + 4 > len(data):
        raise ValueError("truncated")
    return int.from_bytes(data[at:at + 4], "little")


def _value(data: bytes, at: int, depth: int) -> tuple:
    """(object, next offset) for the marshal v2 subset the agents write."""
    if depth > 16 or at >= len(data):
        raise ValueError("too deep or truncated")
    code, at = data[at] & 0x7F, at + 1
    if code in b"NTF":
        return {78: None, 84: True, 70: False}[code], at
    if code == 0x69:  # 'i'
        _u32(data, at)
        return int.from_bytes(data[at:at + 4], "little", signed=True), at + 4
    if code == 0x6C:  # 'l': a signed count of 15-bit digits
        n = int.from_bytes(data[at:at + 4], "little", signed=True)
        if abs(n) > 5 or at + 4 + 2 * abs(n) > len(data):
            raise ValueError("bad long")
        digits = [int.from_bytes(data[at + 4 + 2 * i:at + 6 + 2 * i], "little") for i in range(abs(n))]
        v = sum(d << (15 * i) for i, d in enumerate(digits))
        return (-v if n < 0 else v), at + 4 + 2 * abs(n)
    if code in b"us":
        n = _u32(data, at)
        if at + 4 + n > len(data):
            raise ValueError("truncated")
        raw = data[at + 4:at + 4 + n]
        return (raw.decode() if code == 0x75 else raw), at + 4 + n
    if code == 0x5B:  # '[' a list
        n, at = _u32(data, at), at + 4
        if n > len(data):
            raise ValueError("bad length")
        out = []
        for _ in range(n):
            v, at = _value(data, at, depth + 1)
            out.append(v)
        return out, at
    if code == 0x7B:  # '{' a dict, up to '0'
        out = {}
        while True:
            if at >= len(data):
                raise ValueError("truncated")
            if data[at] == 0x30:
                return out, at + 1
            k, at = _value(data, at, depth + 1)
            v, at = _value(data, at, depth + 1)
            if not isinstance(k, str):
                raise ValueError("a key that is not a string")
            out[k] = v
    raise ValueError(f"type {chr(code)!r} is not allowed")


def safe_loads(data: bytes) -> dict:
    """A MSG payload from a guest agent. The guest is not trusted, and marshal.loads is not
    safe against malicious data (it builds code objects, and has crashed on malformed
    input): only dicts, lists, str, bytes, int, bool and None, nested at most 16 deep."""
    obj, at = _value(data, 0, 0)
    if at != len(data) or not isinstance(obj, dict):
        raise ValueError("not a single dict")
    return obj


class Decoder:
    """Feed bytes, get back complete (kind, sid, payload) frames; MSG payloads decoded
    (with safe_loads when `untrusted`: frames from a guest)."""

    def __init__(self, untrusted: bool = False):
        self.buf = b""
        self.loads = safe_loads if untrusted else marshal.loads

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        while len(self.buf) >= HEADER:
            size = int.from_bytes(self.buf[:4], "big")
            if size > MAX_PAYLOAD:
                raise ValueError(f"frame of {size} bytes is too large")
            if len(self.buf) < HEADER + size:
                break
            kind, sid = self.buf[4], int.from_bytes(self.buf[5:9], "big")
            payload = self.buf[HEADER:HEADER + size]
            self.buf = self.buf[HEADER + size:]
            out.append((kind, sid, self.loads(payload) if kind == MSG else payload))
        return out


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select
            select.select([], [fd], [])
            continue
        view = view[n:]
