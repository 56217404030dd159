"""rt's one frame for its local pipes: a 4-byte big-endian length, then a marshal'ed value of
builtins. The core and the stub (shim/protocol.py, shim/stub.py), the VM shim's gate and ready
pipes, and lxc_system's keeper speak it. Builtins only (marshal, os), so the lean stub imports it
as it is. The VM's host-guest wire (plugins/hypervisor_kvm/wire.py) is the one other framing: it
adds a kind and a session id to multiplex streams, over a marshal subset that agent.c decodes.
"""
import marshal
import os

MAX_FRAME = 64 << 20  # a plan with a big seccomp filter is well below


def pack(value) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(4, "big") + data


def unpack(payload: bytes):
    return marshal.loads(payload)


def send(fd: int, value) -> None:
    data = pack(value)
    while data:
        data = data[os.write(fd, data):]


def recv(fd: int):
    """The next value, or None at EOF; a frame cut short is EOFError."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes")
    body = _read_exact(fd, n)
    if body is None:
        raise EOFError("a frame cut short")
    return marshal.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
