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


class Decoder:
    """Feed bytes, get back complete (kind, sid, payload) frames; MSG payloads decoded."""

    def __init__(self):
        self.buf = b""

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
            out.append((kind, sid, marshal.loads(payload) if kind == MSG else payload))
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
