"""checkpoint and restore with CRIU (app_single): a counting process goes on counting."""
import os
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.root

COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /run/count; sleep 0.1; done"]


def _criu_problem() -> str | None:
    criu = shutil.which("criu") or next((p for p in ("/usr/sbin/criu", "/sbin/criu") if os.access(p, os.X_OK)), None)
    if criu is None:
        return "criu is not installed"
    p = subprocess.run([criu, "check"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode == 0:
        return None
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {p.returncode}"


@pytest.fixture(scope="module", autouse=True)
def _criu_works():
    why = _criu_problem()
    if why is None:
        return
    msg = f"criu check fails on this host: {why} (scripts/test-in-vm runs these in a guest)"
    if os.environ.get("CI") and os.environ.get("RT_IN_VM") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _with_run(cfg):
    cfg["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})


def _count(pid: int) -> int:
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/root/run/count") as f:
                text = f.read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no count in /proc/{pid}/root/run/count")


def _started(runtime, cid, bundle) -> int:
    # stdio: /dev/null and a named file (criu 3.17 cannot reopen an O_TMPFILE one, what
    # runtime.create gives)
    runtime.ids.add(cid)
    with open(os.path.join(os.path.dirname(bundle), f"{cid}.err"), "w") as err:
        p = subprocess.run([runtime.path, "--root", runtime.root, "create", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
    assert p.returncode == 0
    runtime("start", cid, check=True)
    pid = runtime.state(cid)["pid"]
    first = _count(pid)
    deadline = time.monotonic() + 30
    while _count(pid) < first + 3:  # it counts
        assert time.monotonic() < deadline, "the counter does not count"
        time.sleep(0.1)
    return pid


def _rt(runtime, *args):
    return runtime(*args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=180)


def test_checkpoint_restore_goes_on_counting(runtime, make_bundle, tmp_path, no_leaks):
    b = make_bundle(COUNTER, edit=_with_run)
    pid = _started(runtime, "cr", b)
    images, work = tmp_path / "images", tmp_path / "work"
    at = _count(pid)
    p = _rt(runtime, "checkpoint", "--image-path", str(images), "--work-path", str(work), "cr")
    assert p.returncode == 0, p.stderr
    assert (work / "dump.log").exists() and (images / "descriptors.json").exists()
    assert runtime("state", "cr").returncode != 0  # deleted, as runc does

    pidfile = tmp_path / "restored.pid"
    p = _rt(runtime, "restore", "--detach", "--image-path", str(images), "--work-path", str(work),
            "--bundle", b, "--pid-file", str(pidfile), "cr")
    assert p.returncode == 0, p.stderr
    st = runtime.state("cr")
    assert st["status"] == "running"
    assert int(pidfile.read_text()) == st["pid"]
    before = _count(st["pid"])
    time.sleep(1)
    after = _count(st["pid"])
    assert after > before >= at > 3, (at, before, after)  # it went on from where it was, not from 1
    runtime("kill", "cr", "KILL", check=True)
    deadline = time.monotonic() + 10
    while runtime.state("cr")["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runtime("delete", "cr", check=True)


def test_restore_in_the_foreground_waits_and_deletes(runtime, make_bundle, tmp_path, no_leaks):
    """Without --detach, as `rt run`: the restored init is rt's child; rt waits, then deletes it."""
    b = make_bundle(COUNTER, edit=_with_run)
    _started(runtime, "fg", b)
    images = tmp_path / "img"
    assert _rt(runtime, "checkpoint", "--image-path", str(images), "fg").returncode == 0
    with open(tmp_path / "fg.err", "w") as err:
        proc = subprocess.Popen([runtime.path, "--root", runtime.root, "restore", "--image-path", str(images),
                                 "--bundle", b, "fg"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while True:
            p = runtime("state", "fg")
            if p.returncode == 0 and '"running"' in p.stdout:
                break
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "fg.err").read_text()
            time.sleep(0.2)
        pid = runtime.state("fg")["pid"]
        n = _count(pid)
        time.sleep(0.6)
        assert _count(pid) > n
        runtime("kill", "fg", "KILL", check=True)
        assert proc.wait(timeout=60) == 137
        assert runtime("state", "fg").returncode != 0  # deleted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_checkpoint_leave_running(runtime, make_bundle, tmp_path, no_leaks):
    b = make_bundle(COUNTER, edit=_with_run)
    pid = _started(runtime, "lr", b)
    p = _rt(runtime, "checkpoint", "--leave-running", "--image-path", str(tmp_path / "img"), "lr")
    assert p.returncode == 0, p.stderr
    assert runtime.state("lr")["status"] == "running"
    n = _count(pid)
    time.sleep(0.6)
    assert _count(pid) > n
    runtime("delete", "--force", "lr", check=True)


def test_failed_restore_leaves_nothing(runtime, make_bundle, tmp_path, no_leaks):
    b = make_bundle(COUNTER, edit=_with_run)
    empty = tmp_path / "nothing"
    empty.mkdir()
    p = _rt(runtime, "restore", "-d", "--image-path", str(empty), "--bundle", b, "bad")
    assert p.returncode != 0 and "no checkpoint" in p.stderr
    # a checkpoint that criu cannot restore: its image files damaged
    _started(runtime, "src", b)
    images = tmp_path / "img"
    assert _rt(runtime, "checkpoint", "--image-path", str(images), "src").returncode == 0
    for name in os.listdir(images):
        if name.startswith("core-"):
            (images / name).write_bytes(b"\0" * 16)
    p = _rt(runtime, "restore", "-d", "--image-path", str(images), "--bundle", b, "bad")
    assert p.returncode != 0
    assert "restore.log" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(runtime.root, "bad"))
    assert "bad" not in runtime("list", "-q").stdout


def test_other_kinds_are_not_supported(runtime, make_bundle, tmp_path):
    b = make_bundle(["true"], edit=lambda c: c.setdefault("annotations", {}).update({"rt.plugin": "lxc_system"}))
    os.makedirs(tmp_path / "img")
    (tmp_path / "img" / "inventory.img").write_bytes(b"")
    p = _rt(runtime, "restore", "-d", "--image-path", str(tmp_path / "img"), "--bundle", b, "k")
    assert p.returncode != 0 and "not supported for lxc_system" in p.stderr, p.stderr


def test_podman_checkpoint_restore(tmp_path_factory, busybox_rootfs):
    """podman container checkpoint/restore with rt as the runtime (rt checkpoint, rt restore -d
    under conmon, with its pipes as stdio)."""
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman and conmon are needed")
    from clients import Podman
    from conftest import runtime_path
    pm = Podman(str(tmp_path_factory.mktemp("podman")), runtime_path(), busybox_rootfs)

    def count(cid):
        p = pm(["exec", cid, "cat", "/tmp/count"])
        return int(p.stdout.strip() or 0) if p.returncode == 0 else 0
    try:
        cid = pm(["run", "-d", "localhost/busybox:rt", "sh", "-c", COUNTER[-1].replace("/run/", "/tmp/")],
                 check=True).stdout.strip()
        deadline = time.monotonic() + 60
        while count(cid) < 5:
            assert time.monotonic() < deadline, "the counter does not count"
            time.sleep(0.2)
        pm(["container", "checkpoint", cid], check=True, timeout=300)
        assert pm(["inspect", "-f", "{{.State.Status}}", cid], check=True).stdout.strip() == "exited"
        pm(["container", "restore", cid], check=True, timeout=300)
        assert pm(["inspect", "-f", "{{.State.Status}}", cid], check=True).stdout.strip() == "running"
        before = count(cid)
        time.sleep(1)
        assert count(cid) > before >= 5
    finally:
        pm.close()
