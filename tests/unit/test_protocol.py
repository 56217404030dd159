"""Unit tests of rt.shim.protocol, and its interoperability with the stub's own framing."""
import importlib.util
import json
import marshal
import os
import threading
import time

import pytest

from rt.shim import protocol as proto
from rt.shim.protocol import (Channel, Child, Error, IdMap, Hello, ProtocolError, Ready, Run, ShimFailed,
                              UnexpectedMessage, decode, encode)

STUB_PATH = os.path.join(os.path.dirname(proto.__file__), "stub.py")

MESSAGES = [
    Hello(version=1, pid=1234),
    Run(plan={"join": [], "unshare": ["pid", "mount"], "rootfs": "/b/rootfs", "fifo": None,
              "process": {"args": ["sh", "-c", "echo hi"], "env": ["A=1"], "uid": 0, "caps": None}}),
    Child(pid=4321),
    Ready(pid=4321),
    Error(reason="mount /proc: Permission denied", kind="errno:13"),
    Error(reason="plain"),
    IdMap(pid=137),
]


@pytest.fixture(scope="module")
def stub():
    import sys
    if os.path.dirname(STUB_PATH) not in sys.path:  # its modules beside it, as STUB_CMD finds them
        sys.path.append(os.path.dirname(STUB_PATH))
    spec = importlib.util.spec_from_file_location("rt_test_stub", STUB_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # only defines functions; main() is guarded
    return mod


@pytest.fixture
def pipe():
    """(core channel reading r, raw write fd) -- closes whatever is left open."""
    r, w = os.pipe()
    fds = {"w": w}
    ch = Channel(r)
    yield ch, fds
    ch.close()
    if fds["w"] is not None:
        try:
            os.close(fds["w"])
        except OSError:
            pass


def close_w(fds):
    os.close(fds["w"])
    fds["w"] = None


def frame(obj) -> bytes:
    data = marshal.dumps(obj)
    return len(data).to_bytes(4, "big") + data


# --- encode / decode -----------------------------------------------------------------------------


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    data = encode(msg)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert marshal.loads(data[4:])["type"] == type(msg).__name__.lower()
    got = decode(data[4:])
    assert type(got) is type(msg)
    assert got == msg


def test_wire_format_is_a_plain_dict():
    assert marshal.loads(encode(Child(pid=7))[4:]) == {"type": "child", "pid": 7}
    assert marshal.loads(encode(Error(reason="x"))[4:]) == {"type": "error", "reason": "x", "kind": "error"}


def test_error_kind_defaults():
    assert decode(marshal.dumps({"type": "error", "reason": "boom"})) == Error(reason="boom", kind="error")


def test_unknown_fields_are_ignored():
    got = decode(marshal.dumps({"type": "child", "pid": 5, "new_field": [1, 2], "other": {"x": 1}}))
    assert got == Child(pid=5)


@pytest.mark.parametrize("payload", [
    b"",
    b"\xff\xfe garbage",
    marshal.dumps({"type": "nosuch", "pid": 1}),
    marshal.dumps({"pid": 1}),
    marshal.dumps({"type": "child"}),
    marshal.dumps({"type": "child", "pid": "not an int"}),
    marshal.dumps([1, 2, 3]),
    marshal.dumps(42),
])
def test_bad_frames(payload):
    with pytest.raises(ProtocolError, match="shim protocol: bad frame"):
        decode(payload)


def test_protocol_versions_match(stub):
    assert stub.PROTOCOL_VERSION == proto.PROTOCOL_VERSION


# --- Channel -------------------------------------------------------------------------------------------


def test_channel_send_recv_sequence():
    r, w = os.pipe()
    ch = Channel(r, w)
    try:
        for m in MESSAGES:
            ch.send(m)
        assert [ch.recv(timeout=1) for _ in MESSAGES] == MESSAGES
    finally:
        ch.close()
    assert ch.rfd is None and ch.wfd is None
    ch.close()  # twice is fine


def test_several_frames_in_one_write(pipe):
    ch, fds = pipe
    os.write(fds["w"], encode(Child(pid=1)) + encode(Ready(pid=1)) + encode(IdMap(pid=0)))
    assert ch.recv(1) == Child(pid=1)
    assert ch.recv(1) == Ready(pid=1)
    assert ch.recv(1) == IdMap(pid=0)


def test_frame_split_across_writes(pipe):
    ch, fds = pipe
    data = encode(Hello(version=1, pid=99))

    def dribble():
        for i in range(len(data)):
            os.write(fds["w"], data[i:i + 1])
            time.sleep(0.001)
    t = threading.Thread(target=dribble)
    t.start()
    try:
        assert ch.recv(5) == Hello(version=1, pid=99)
    finally:
        t.join()


def test_large_frame(pipe):
    ch, fds = pipe
    big = Run(plan={"env": [f"K{i}=" + "v" * 100 for i in range(3000)]})  # ~300 KiB, > a pipe buffer
    t = threading.Thread(target=lambda: os.write(fds["w"], encode(big)))
    t.start()
    try:
        assert ch.recv(5) == big
    finally:
        t.join()


def test_recv_none_at_eof(pipe):
    ch, fds = pipe
    os.write(fds["w"], encode(Child(pid=3)))
    close_w(fds)
    assert ch.recv(1) == Child(pid=3)
    assert ch.recv(1) is None
    assert ch.recv(1) is None


@pytest.mark.parametrize("data", [b"\x00\x00", frame({"type": "child", "pid": 3})[:-2],
                                  (100).to_bytes(4, "big") + b"short"])
def test_truncated_frame(pipe, data):
    ch, fds = pipe
    os.write(fds["w"], data)
    close_w(fds)
    with pytest.raises(ProtocolError, match="truncated frame"):
        ch.recv(1)


def test_timeout(pipe):
    ch, fds = pipe
    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="timed out"):
        ch.recv(timeout=0.05)
    assert 0.04 < time.monotonic() - t0 < 2


def test_timeout_mid_frame(pipe):
    ch, fds = pipe
    os.write(fds["w"], frame({"type": "child", "pid": 3})[:5])
    with pytest.raises(ProtocolError, match="timed out"):
        ch.recv(timeout=0.05)


def test_expect_returns_the_message(pipe):
    ch, fds = pipe
    os.write(fds["w"], encode(Ready(pid=8)))
    assert ch.expect(Ready, timeout=1) == Ready(pid=8)


def test_expect_error_raises_shim_failed(pipe):
    ch, fds = pipe
    os.write(fds["w"], encode(Error(reason="pivot_root: Invalid argument", kind="errno:22")))
    with pytest.raises(ShimFailed) as e:
        ch.expect(Ready, timeout=1)
    assert e.value.reason == "pivot_root: Invalid argument"
    assert e.value.kind == "errno:22"
    assert str(e.value) == "pivot_root: Invalid argument"
    assert isinstance(e.value, ProtocolError)


def test_expect_wrong_type(pipe):
    ch, fds = pipe
    os.write(fds["w"], encode(Child(pid=8)))
    with pytest.raises(UnexpectedMessage) as e:
        ch.expect(Ready, timeout=1)
    assert str(e.value) == "shim protocol: expected Ready, got Child"
    assert e.value.expected is Ready and e.value.got == Child(pid=8)


def test_expect_at_eof(pipe):
    ch, fds = pipe
    close_w(fds)
    with pytest.raises(ProtocolError) as e:
        ch.expect(Hello, timeout=1, eof_reason="shim died before hello")
    assert str(e.value) == "shim died before hello"
    assert not isinstance(e.value, ShimFailed)


# --- the stub's framing ------------------------------------------------------------------------------------


def test_stub_send_core_recv(stub, pipe):
    ch, fds = pipe
    stub.send(fds["w"], {"type": "hello", "version": stub.PROTOCOL_VERSION, "pid": os.getpid()})
    stub.send(fds["w"], {"type": "child", "pid": 11})
    stub.send(fds["w"], {"type": "ready", "pid": 11})
    stub.send(fds["w"], {"type": "error", "reason": "exec sh: No such file", "kind": "errno:2"})
    stub.send(fds["w"], {"type": "idmap", "pid": 3})
    assert ch.expect(Hello, 1) == Hello(version=proto.PROTOCOL_VERSION, pid=os.getpid())
    assert ch.expect(Child, 1) == Child(pid=11)
    assert ch.expect(Ready, 1) == Ready(pid=11)
    with pytest.raises(ShimFailed) as e:
        ch.expect(IdMap, 1)
    assert (e.value.reason, e.value.kind) == ("exec sh: No such file", "errno:2")
    assert ch.recv(1) == IdMap(pid=3)


def test_core_send_stub_recv(stub):
    r, w = os.pipe()
    ch = Channel(r, w)
    try:
        plan = {"join": [("network", "/proc/1/ns/net")], "unshare": ["pid"], "fifo": None, "devices": [],
                "process": {"args": ["true"], "uid": 0, "caps": {"bounding": [0, 5]}}}
        ch.send(Run(plan=plan))
        ch.send(IdMap(pid=0))
        got = stub.recv(r)
        assert got["type"] == "run"
        # the same data (a tuple may arrive as a tuple or a list: the stub only indexes it)
        assert json.loads(json.dumps(got["plan"])) == json.loads(json.dumps(plan))
        assert list(got["plan"]["join"][0]) == ["network", "/proc/1/ns/net"]
        assert stub.recv(r) == {"type": "idmap", "pid": 0}
        os.close(w)
        ch.wfd = None
        assert stub.recv(r) is None  # EOF
    finally:
        ch.close()


def test_stub_large_frame(stub, pipe):
    ch, fds = pipe
    msg = {"type": "error", "reason": "x" * 200_000, "kind": "error"}
    t = threading.Thread(target=stub.send, args=(fds["w"], msg))
    t.start()
    try:
        assert ch.recv(5) == Error(reason="x" * 200_000)
    finally:
        t.join()


def test_frames_eof_cut_and_size():
    from rt.shim import frames
    r, w = os.pipe()
    frames.send(w, {"type": "x", "n": [1, 2]})
    os.write(w, (10).to_bytes(4, "big") + b"abc")  # a frame cut short
    os.close(w)
    assert frames.recv(r) == {"type": "x", "n": [1, 2]}
    with pytest.raises(EOFError):
        frames.recv(r)
    assert frames.recv(r) is None  # EOF
    os.close(r)
    r, w = os.pipe()
    os.write(w, (frames.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        frames.recv(r)
    os.close(r)
    os.close(w)
