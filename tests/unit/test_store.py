"""Unit tests of rt.core.store and rt.core.status, with real child processes for pids."""
import errno
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from rt.core import status as st
from rt.core.errors import NotFound, RtError
from rt.core import jsonio
from rt.core.store import (Container, CorruptState, Store, StoreError, atomic_write, check_id, proc_start_time,
                           record_problem)
from rt.spec.state import rfc3339nano as rfc3339_now

OCI_KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "root"))


@pytest.fixture
def child():
    p = subprocess.Popen(["sleep", "10"])
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()


def settled(store, cid, record) -> Container:
    """A container whose create finished: unlocked, creating=False."""
    c = store.create(cid, record)
    c.record["creating"] = False
    c.save()
    c.unlock()
    return store.open(cid)


def live_record(p) -> dict:
    ticks, state = proc_start_time(p.pid)
    return {"pid": p.pid, "start_time": ticks, "bundle": "/bundle", "rootfs": "/bundle/rootfs",
            "created": rfc3339_now(), "owner": ""}


# --- check_id --------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", ["a", "abc", "A-b_c.d+e", "0", "x" * 255, "..a", "a..", ".hidden"])
def test_check_id_valid(cid):
    check_id(cid)


def test_check_id_empty():
    with pytest.raises(RtError) as e:
        check_id("")
    assert e.value.msg == "container id cannot be empty"


@pytest.mark.parametrize("cid", [".", "..", "a/b", "/a", "a b", "a\tb", "a:b", "a$", "a\0b", "x" * 1025])
def test_check_id_invalid(cid):
    with pytest.raises(RtError) as e:
        check_id(cid)
    assert e.value.msg == f"invalid container id format: {cid}"


@pytest.mark.parametrize("cid", ["abc\n", "caf\u00e9"])
def test_check_id_rejects_newline_and_non_ascii(cid):
    with pytest.raises(RtError):
        check_id(cid)


def test_create_overlong_id_is_an_rt_error(store):
    with pytest.raises(RtError):
        store.create("x" * 300, {})


# --- helpers -------------------------------------------------------------------------------


def test_proc_start_time_of_live_child(child):
    ticks, state = proc_start_time(child.pid)
    assert isinstance(ticks, int) and ticks > 0
    assert state in ("R", "S", "D")
    assert proc_start_time(child.pid)[0] == ticks  # stable while it lives
    # our own start time is earlier than our child's
    assert proc_start_time(os.getpid())[0] <= ticks


def test_proc_start_time_of_gone_pid(child):
    child.kill()
    child.wait()
    assert proc_start_time(child.pid) is None


def load_config_min():
    from rt.spec import load_config
    return load_config(b'{"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}')


def test_created_is_runc_s_rfc3339nano():
    from rt.core.admission import Admitted
    a = Admitted("/b", load_config_min(), {}, b"", type("I", (), {"name": "n", "plugin": "p", "version": "1",
                                                                  "target": "m:C"})(), "/b/rootfs")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z", a.record()["created"])


def test_atomic_write(tmp_path):
    p = tmp_path / "f"
    atomic_write(str(p), b"one")
    atomic_write(str(p), b"two", 0o644)
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]  # no temp files left


# --- create / read / ids ----------------------------------------------------------------------


def test_create_claims_id_once(store):
    c = store.create("c1", {"bundle": "/b"})
    assert c.record == {"bundle": "/b", "creating": True}
    assert os.path.isdir(c.dir)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(c.dir).st_mode & 0o777 == 0o711 & ~umask
    with pytest.raises(RtError) as e:
        store.create("c1", {"bundle": "/other"})
    assert e.value.msg == "container with id exists: c1"
    # the first record is untouched
    assert store.read("c1") == {"bundle": "/b", "creating": True}
    c.unlock()


def test_create_rejects_bad_id_before_touching_disk(store):
    with pytest.raises(RtError):
        store.create("a/b", {})
    assert not os.path.exists(store.root)


def test_record_round_trip(store):
    rec = {"bundle": "/b", "pid": 42, "start_time": 123, "annotations": {"k": "v"},
           "extra": {"cgroup": "/rt/c1", "list": [1, 2]}}
    c = store.create("c1", rec)
    c.record["creating"] = False
    c.extra["more"] = True
    c.save()
    c.unlock()
    got = store.open("c1")
    assert got.record == dict(rec, creating=False, extra={"cgroup": "/rt/c1", "list": [1, 2], "more": True})
    assert got.pid == 42
    with open(os.path.join(got.dir, "state.json")) as f:
        assert json.load(f) == got.record


def test_open_missing_and_invalid(store):
    with pytest.raises(NotFound) as e:
        store.open("nosuch")
    assert e.value.msg == "container does not exist" and e.value.cid == "nosuch"
    with pytest.raises(RtError, match="invalid container id format"):
        store.open("../etc")


def test_corrupt_state_file(store):
    c = store.create("c1", {})
    c.unlock()
    with open(os.path.join(c.dir, "state.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(RtError, match="container c1: corrupt state file"):
        store.open("c1")


def test_ids(store):
    assert store.ids() == []  # root does not exist yet
    for cid in ("b", "a", "c"):
        store.create(cid, {}).unlock()
    os.mkdir(os.path.join(store.root, "half-made"))  # no state.json: not listed
    with open(os.path.join(store.root, "stray-file"), "w"):
        pass
    assert store.ids() == ["a", "b", "c"]


def test_store_root_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store("rel").root == str(tmp_path / "rel")


# --- faults: corrupt records, failed writes, half-made entries (issue 13) -----------------------


@pytest.mark.parametrize("data,why", [
    (b"", "empty file"),
    (b"  \n", "empty file"),
    (b"{", "invalid JSON: "),
    (b'{"pid": 1', "invalid JSON: "),
    (b"\x00garbage", "invalid JSON"),
    (b'{"bundle": "\xff"}', "invalid JSON: not UTF-8 at offset 12"),
    (b"[]", "not a JSON object but an array"),
    (b'"x"', "not a JSON object but a string"),
    (b"3", "not a JSON object but an integer"),
    (b"null", "not a JSON object but null"),
    (b'{"pid": "7"}', '"pid" is a string, not an integer'),
    (b'{"pid": true}', '"pid" is a boolean, not an integer'),
    (b'{"start_time": 1.5}', '"start_time" is a number, not an integer'),
    (b'{"extra": []}', '"extra" is an array, not an object'),
    (b'{"creating": 1}', '"creating" is an integer, not a boolean'),
    (b'{"bundle": null}', '"bundle" is null, not a string'),
])
def test_corrupt_record_names_file_and_problem(store, data, why):
    store.create("c1", {}).unlock()
    path = os.path.join(store.root, "c1", "state.json")
    with open(path, "wb") as f:
        f.write(data)
    for read in (lambda: store.read("c1"), lambda: store.open("c1"), lambda: store.open("c1", lock=True)):
        with pytest.raises(CorruptState) as e:
            read()
        assert isinstance(e.value, RtError) and e.value.code == 1
        assert e.value.msg.startswith(f"container c1: corrupt state file {path}: {why}"), e.value.msg
        assert e.value.path == path


def test_every_truncation_of_a_record_is_a_value_error():
    data = jsonio.dumps({"bundle": "/b", "pid": 12, "extra": {"cgroup": "/rt/c1", "l": [1, "x", None]},
                         "annotations": {"k": "v\u00e9"}, "creating": False}).encode()
    for i in range(len(data)):
        with pytest.raises(ValueError, match="invalid JSON"):
            jsonio.loads(data[:i])
    assert jsonio.loads(data)["extra"]["l"] == [1, "x", None]


def test_deeply_nested_json_is_a_value_error():
    with pytest.raises(ValueError, match="invalid JSON"):
        jsonio.loads(b"[" * 100000)


def test_record_problem_accepts_what_create_writes():
    assert record_problem({"bundle": "/b", "rootfs": "/r", "created": rfc3339_now(), "owner": "",
                           "annotations": {}, "plugin": "app_single", "plugin_ep": "app_single",
                           "plugin_version": None, "backend": "m:C", "pid": 0, "extra": {},
                           "creating": True, "hooks": {}, "start_time": 5, "paused": False}) is None


def test_unreadable_state_file(store):
    store.create("c1", {}).unlock()
    path = os.path.join(store.root, "c1", "state.json")
    os.unlink(path)
    os.mkdir(path)
    with pytest.raises(CorruptState, match=f"corrupt state file {path}: Is a directory"):
        store.read("c1")


def test_lock_of_corrupt_record_releases_the_lock(store):
    c = settled(store, "c1", {})
    with open(os.path.join(c.dir, "state.json"), "w") as f:
        f.write("[]")
    with pytest.raises(CorruptState):
        c.lock()
    assert c._lock_fd is None
    fd = os.open(os.path.join(c.dir, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free
    finally:
        os.close(fd)


def test_atomic_write_failure_keeps_target_and_leaves_no_tmp(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "x").write_text("")
    with pytest.raises(StoreError) as e:
        atomic_write(str(target), b"data")  # rename onto a directory fails
    assert str(e.value).startswith(f"write {target}: ")
    assert e.value.filename == str(target) and e.value.errno in (errno.EISDIR, errno.ENOTEMPTY)
    assert sorted(os.listdir(tmp_path)) == ["d"]
    with pytest.raises(StoreError, match=f"write {tmp_path}/no/f: No such file or directory"):
        atomic_write(str(tmp_path / "no" / "f"), b"data")


# Under RLIMIT_FSIZE the kernel writes what fits (a short write), then refuses with EFBIG:
# the same path as a nearly full filesystem, without root or a mount.
FSIZE_CHILD = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from rt.core.store import Store, StoreError, atomic_write
where = sys.argv[1]
try:
    if sys.argv[3] == "write":
        atomic_write(os.path.join(where, "f"), b"y" * 3 * limit)
    else:
        Store(os.path.join(where, "root")).create("c1", {"bundle": "x" * 3 * limit})
except StoreError as e:
    print(e.errno, e)
"""


def _fsize_child(tmp_path, what, limit=100) -> str:
    p = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(tmp_path), str(limit), what],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_atomic_write_of_a_file_too_big(tmp_path):
    (tmp_path / "f").write_bytes(b"old")
    out = _fsize_child(tmp_path, "write")
    assert out == f"{errno.EFBIG} write {tmp_path}/f: File too large"
    assert (tmp_path / "f").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_create_rolls_back_when_the_record_cannot_be_written(tmp_path):
    out = _fsize_child(tmp_path, "create")
    root = tmp_path / "root"
    assert out == f"{errno.EFBIG} write {root}/c1/state.json: File too large"
    assert os.listdir(root) == []  # the id stays free
    Store(str(root)).create("c1", {}).unlock()


def test_create_names_the_root_it_cannot_make(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=f"mkdir {tmp_path}/file/root: Not a directory"):
        Store(str(tmp_path / "file" / "root")).create("c1", {})


@pytest.mark.parametrize("files", [[], [".lock"], [".lock", "state.json.42.tmp"], ["config.json.42.tmp"]])
def test_open_entry_of_half_made_entry(store, files):
    d = os.path.join(store.root, "c1")
    os.makedirs(d)
    for name in files:
        with open(os.path.join(d, name), "w") as f:
            f.write("{")
    assert store.ids() == []
    with pytest.raises(NotFound):
        store.open("c1")
    c = store.open_entry("c1")
    assert c.record == {} and c.corrupt is None and c._lock_fd is not None
    c.remove()
    c.unlock()
    assert not os.path.exists(d)
    store.create("c1", {}).unlock()  # the id is free again


def test_open_entry(store):
    assert store.open_entry("nosuch") is None
    settled(store, "good", {"pid": 3})
    c = store.open_entry("good")
    assert c.record["pid"] == 3 and c.corrupt is None
    c.unlock()
    store.create("bad", {}).unlock()
    with open(os.path.join(store.root, "bad", "state.json"), "w") as f:
        f.write('"x"')
    c = store.open_entry("bad")
    assert c.record == {} and isinstance(c.corrupt, CorruptState)
    c.unlock()
    with pytest.raises(RtError, match="invalid container id"):
        store.open_entry("../x")


def test_open_entry_waits_for_a_create_in_progress(store):
    c = store.create("c1", {})  # locked while it is being created
    p = _locker(store, "c1", any_state=True)
    try:
        assert not _has_output(p, 0.3), "did not wait for the create"
        c.record["creating"] = False
        c.save()
        c.unlock()
        assert p.stdout.readline() == "locked {'creating': False}\n"
    finally:
        _reap(p)


def test_lock_waiter_does_not_take_a_replaced_entry(store):
    """Removed and created again while a waiter waits: the old lock file is not the entry's lock."""
    old = store.create("c1", {})
    p = _locker(store, "c1")
    try:
        assert not _has_output(p, 0.2)
        old.remove()
        new = store.create("c1", {"bundle": "/new"})  # new lock file, held
        old.unlock()
        assert not _has_output(p, 0.3), "took the lock of a removed entry"
        new.record["creating"] = False
        new.save()
        new.unlock()
        assert p.stdout.readline() == "locked\n"
    finally:
        _reap(p)


# --- status derivation with a real process -----------------------------------------------------


def test_status_creating(store, child):
    c = store.create("c1", live_record(child))
    assert c.status() == "creating"
    c.unlock()


def test_status_created_running_paused(store, child):
    c = settled(store, "c1", live_record(child))
    os.mkfifo(c.fifo)
    assert c.alive()
    assert c.status() == "created"
    c.record["paused"] = True  # the fifo wins: it has not been started
    assert c.status() == "created"
    os.unlink(c.fifo)
    c.record["paused"] = False
    assert c.status() == "running"
    c.record["paused"] = True
    assert c.status() == "paused"


def test_status_stopped_after_exit(store, child):
    c = settled(store, "c1", live_record(child))
    assert c.status() == "running"
    child.kill()
    child.wait()
    assert not c.alive()
    assert c.status() == "stopped"
    os.mkfifo(c.fifo)  # a leftover fifo does not make a dead container "created"
    assert c.status() == "stopped"


def test_status_stopped_for_zombie(store, child):
    c = settled(store, "c1", live_record(child))
    child.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while proc_start_time(child.pid)[1] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert c.status() == "stopped"  # not yet reaped, but exited


def test_status_stopped_for_recycled_pid(store, child):
    rec = live_record(child)
    rec["start_time"] -= 1  # same pid, a different process
    c = settled(store, "c1", rec)
    assert proc_start_time(child.pid) is not None
    assert not c.alive()
    assert c.status() == "stopped"


def test_status_stopped_without_pid(store):
    c = settled(store, "c1", {"pid": 0})
    assert c.status() == "stopped"
    c = settled(store, "c2", {})
    assert c.status() == "stopped"


# --- oci_state -----------------------------------------------------------------------------------


def test_oci_state_running(store, child):
    rec = live_record(child)
    c = settled(store, "c1", rec)
    s = c.oci_state()
    assert list(s) == OCI_KEYS
    assert s == {"ociVersion": "1.2.0", "id": "c1", "pid": child.pid, "status": "running",
                 "bundle": "/bundle", "rootfs": "/bundle/rootfs", "created": rec["created"], "owner": ""}
    json.dumps(s)


def test_oci_state_annotations_only_when_non_empty(store, child):
    c = settled(store, "c1", dict(live_record(child), annotations={}))
    assert "annotations" not in c.oci_state()
    c = settled(store, "c2", dict(live_record(child), annotations={"a": "1", "b": "2"}))
    s = c.oci_state()
    assert list(s) == OCI_KEYS + ["annotations"]
    assert s["annotations"] == {"a": "1", "b": "2"}


def test_oci_state_pid_zero_when_stopped(store, child):
    c = settled(store, "c1", live_record(child))
    child.kill()
    child.wait()
    s = c.oci_state()
    assert s["status"] == "stopped"
    assert s["pid"] == 0
    assert c.pid == child.pid  # the record keeps it


def test_oci_state_recorded_oci_version(store):
    c = settled(store, "c1", {"oci_version": "1.0.2"})
    assert c.oci_state()["ociVersion"] == "1.0.2"


# --- locking ------------------------------------------------------------------------------------

LOCKER = """
import sys
from rt.core.errors import NotFound
from rt.core.store import Store
print("waiting", flush=True)
try:
    if sys.argv[3] == "any":
        print("locked", Store(sys.argv[1]).open_entry(sys.argv[2]).record, flush=True)
    else:
        Store(sys.argv[1]).open(sys.argv[2], lock=True)
        print("locked", flush=True)
except NotFound:
    print("notfound", flush=True)
"""


def _locker(store, cid, any_state=False):
    p = subprocess.Popen([sys.executable, "-c", LOCKER, store.root, cid, "any" if any_state else "one"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "waiting\n"
    return p


def _reap(p):
    if p.poll() is None:
        p.kill()
    p.wait()
    p.stdout.close()


def _has_output(p, timeout):
    return bool(select.select([p.stdout], [], [], timeout)[0])


def test_lock_blocks_another_process(store):
    c = store.create("c1", {})  # create returns it locked
    p = _locker(store, "c1")
    try:
        assert not _has_output(p, 0.3), "second lock did not wait"
        c.unlock()
        assert p.stdout.readline() == "locked\n"
        assert p.wait(5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def test_lock_of_other_id_does_not_wait(store):
    c = store.create("c1", {})
    store.create("c2", {}).unlock()
    p = _locker(store, "c2")
    try:
        assert p.stdout.readline() == "locked\n"
        assert p.wait(5) == 0
    finally:
        c.unlock()
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def test_lock_waiter_gets_notfound_when_deleted_meanwhile(store):
    c = store.create("c1", {})
    p = _locker(store, "c1")
    try:
        assert not _has_output(p, 0.2)
        c.remove()
        c.unlock()
        assert p.stdout.readline() == "notfound\n"
        assert p.wait(5) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def test_lock_reloads_record_and_context_manager_unlocks(store):
    settled(store, "c1", {"pid": 1})
    a = store.open("c1")
    b = store.open("c1", lock=True)
    b.record["pid"] = 2
    b.save()
    b.unlock()
    with a.lock() as locked:
        assert locked is a
        assert a.record["pid"] == 2
        assert a._lock_fd is not None
    assert a._lock_fd is None
    a.unlock()  # idempotent


def test_lock_after_state_file_removed(store):
    c = settled(store, "c1", {})
    os.unlink(os.path.join(c.dir, "state.json"))
    with pytest.raises(NotFound):
        c.lock()
    assert c._lock_fd is None


def test_lock_after_container_deleted(store):
    c = settled(store, "c1", {})
    store.open("c1").remove()
    with pytest.raises(NotFound):
        c.lock()


def test_remove(store):
    c = settled(store, "c1", {})
    c.remove()
    assert not os.path.exists(c.dir)
    assert store.ids() == []
    with pytest.raises(NotFound):
        store.open("c1")


# --- rt.core.status ----------------------------------------------------------------------------

STATUSES = ["creating", "created", "running", "paused", "stopped"]
ALLOWED = {
    "start": {"created"},
    "kill": {"created", "running", "paused"},
    "exec": {"created", "running"},
    "pause": {"running"},
    "resume": {"paused"},
    "update": {"created", "running", "paused"},
    "ps": {"created", "running", "paused"},
    "delete": {"stopped", "created", "creating"},
}
MESSAGES = {
    "start": "cannot start a container in the {status} state",
    "kill": "container not running",
    "exec": "cannot exec in a {status} container",
    "pause": "container not running",
    "resume": "container not paused",
    "update": "cannot update a {status} container",
    "ps": "container is not running",
    "delete": "cannot delete container {id} that is not stopped: {status}",
}


@pytest.mark.parametrize("verb", sorted(ALLOWED))
@pytest.mark.parametrize("status", STATUSES)
def test_check_table(verb, status):
    if status in ALLOWED[verb]:
        assert st.check(verb, status, "c1") is None
    else:
        with pytest.raises(RtError) as e:
            st.check(verb, status, "c1")
        assert e.value.msg == MESSAGES[verb].format(status=status, id="c1")
        assert e.value.code == 1


def test_check_unknown_verb():
    with pytest.raises(KeyError):
        st.check("frobnicate", "running", "c1")


@pytest.mark.parametrize("alive,waiting,paused,creating,want", [
    (True, True, False, True, "creating"),
    (False, False, False, True, "creating"),
    (False, False, False, False, "stopped"),
    (False, True, True, False, "stopped"),
    (True, True, False, False, "created"),
    (True, True, True, False, "created"),
    (True, False, False, False, "running"),
    (True, False, True, False, "paused"),
])
def test_derive(alive, waiting, paused, creating, want):
    assert st.derive(alive, waiting, paused, creating=creating) == want
