"""Escapes from a hostile image (runc's CVE-2019-5736 class), against the runtime under test.

The image's entrypoint is a script whose first line is `#!/proc/self/exe`: the kernel then runs,
inside the container, whatever binary does the final execve. It must be a sealed copy that
nothing can write (runc: a memfd of itself; rt: the rt-exec helper), never a host file.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, base_config, is_rt, runtime_path, system_config, write_bundle

pytestmark = pytest.mark.root

# The CVE's watcher, run in the container: it waits for a process that runs something other than
# busybox (what the kernel ran for `#!/proc/self/exe`), holds its /proc/PID/exe, waits for it to
# exit (ETXTBSY protects a running binary, not an exited one), then opens the file for writing.
# It rewrites the first byte with the byte already there, so a vulnerable runtime is not harmed.
ATTACK_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int caught(int pid, const char *link)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return 0;
	printf("exe=%s\n", link);
	fflush(stdout);
	while (kill(pid, 0) == 0) {
		char st[64], buf[512];
		snprintf(st, sizeof st, "/proc/%d/stat", pid);
		int s = open(st, O_RDONLY);
		ssize_t n = s < 0 ? -1 : read(s, buf, sizeof buf - 1);
		if (s >= 0)
			close(s);
		if (n <= 0 || strstr(buf, ") Z "))
			break;
		usleep(1000);
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	unsigned char c = 0x7f;
	int r = open(path, O_RDONLY | O_CLOEXEC);
	if (r >= 0 && pread(r, &c, 1, 0) != 1)
		c = 0x7f;
	int w = open(path, O_WRONLY | O_CLOEXEC);
	if (w < 0)
		printf("write=%s\n", strerror(errno));
	else
		printf("write=%s\n", pwrite(w, &c, 1, 0) == 1 ? "ok" : strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 20);
	printf("watching\n");
	fflush(stdout);
	while (time(NULL) < end) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			char path[64], link[4096];
			if (pid <= 1 || pid == getpid())
				continue;
			snprintf(path, sizeof path, "/proc/%d/exe", pid);
			ssize_t n = readlink(path, link, sizeof link - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (strstr(link, "busybox") || strstr(link, "/attack/"))
				continue;
			if (caught(pid, link))
				return 0;
		}
		if (d)
			closedir(d);
	}
	printf("timeout\n");
	return 1;
}
"""
EVIL = "#!/proc/self/exe\nimport sys\nprint('HOST-PYTHON-RAN', sys.executable)\n"


@pytest.fixture(scope="module")
def attack_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("attack")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("these tests need cc (scripts/setup installs gcc)")
    (d / "attack.c").write_text(ATTACK_C)
    subprocess.run([cc, "-O2", "-static", "-o", str(d / "attack"), str(d / "attack.c")], check=True)
    (d / "evil").write_text(EVIL)
    os.chmod(d / "evil", 0o755)
    return d


def host_binaries(runtime) -> dict[str, str]:
    """sha256 of the host files that an escape would overwrite."""
    files = {os.path.realpath(sys.executable), os.path.realpath(runtime.path)}
    return {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files if os.path.isfile(f)}


def with_attack(attack_dir, edit=None):
    def edit_cfg(cfg):
        cfg["mounts"].append({"destination": "/attack", "type": "bind", "source": str(attack_dir),
                              "options": ["rbind", "rw"]})
        if edit:
            edit(cfg)
    return edit_cfg


def check_report(out: str, must_catch: bool = True) -> None:
    """What the watcher caught (the runtime's helper, or its own process in the container) could
    not be written once it had exited: a sealed memfd (EPERM) or a read-only mount (EROFS).
    ETXTBSY proves nothing: the same host file may still run elsewhere."""
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not must_catch and "exe" not in facts:  # runc: its processes are never visible (non-dumpable)
        return
    assert "exe" in facts, out
    if facts["exe"] == "/" and facts.get("write") == "Text file busy":
        # rt's stub, caught before its exec: its interpreter is on a detached read-only mount
        # (d_path "/"), but ETXTBSY comes first while any process runs that interpreter.
        # tests/unit/test_exechelper.py shows such a mount refuses writes (EROFS).
        return
    assert facts.get("write") in ("Operation not permitted", "Read-only file system"), out


def watch_exec(runtime, cid: str, attack_dir, tries: int = 40) -> str:
    """Run the watcher in `cid`, then exec the shebang script until the watcher has caught it."""
    out = attack_dir / f"watch-{cid}.out"
    out.unlink(missing_ok=True)
    watcher = subprocess.Popen([runtime.path, "--root", runtime.root, "exec", cid, "sh", "-c",
                                f"/attack/attack 10 > /attack/{out.name}"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if out.exists() and "watching" in out.read_text():
                break
            time.sleep(0.05)
        for _ in range(tries):
            p = runtime("exec", cid, "/attack/evil")
            assert p.returncode != 0
            assert "HOST-PYTHON-RAN" not in p.stdout and "Python" not in p.stderr, p.stdout + p.stderr
            if "write=" in out.read_text():
                break
        watcher.wait(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    return out.read_text()


def test_shebang_entrypoint_runs_no_host_binary(runtime, make_bundle, attack_dir, no_leaks):
    before = host_binaries(runtime)
    p = runtime("run", "--bundle", make_bundle(["/attack/evil"], edit=with_attack(attack_dir)), "shebang")
    assert p.returncode != 0
    assert "HOST-PYTHON-RAN" not in p.stdout and "Python" not in p.stderr, p.stdout + p.stderr
    if is_rt(runtime.path):
        assert "rt-exec: rt's exec helper, not for direct use" in p.stderr
    assert host_binaries(runtime) == before


def test_exec_shebang_cannot_write_the_exe_once_exited(runtime, make_bundle, attack_dir, no_leaks):
    before = host_binaries(runtime)
    runtime.create("ex", make_bundle(["sleep", "100"], edit=with_attack(attack_dir)), check=True)
    runtime("start", "ex", check=True)
    check_report(watch_exec(runtime, "ex", attack_dir), must_catch=is_rt(runtime.path))
    runtime("delete", "--force", "ex", check=True)
    assert host_binaries(runtime) == before


def system_bundle(tmp_path, args, edit=None) -> str:
    """An lxc_system busybox bundle of its own (rootfs made once per test), as a third party
    would write it: init as args, a /run tmpfs, a cgroup namespace."""
    rootfs = tmp_path / "rootfs"
    if not rootfs.exists():
        subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
        (rootfs / "run").mkdir(exist_ok=True)
    cfg = system_config(str(rootfs), args)
    if edit:
        edit(cfg)
    return write_bundle(tmp_path / f"bundle{len(os.listdir(tmp_path))}", cfg)


@pytest.fixture
def system_attack_bundle(tmp_path, attack_dir):
    """An lxc_system container with its own busybox rootfs and the attack at /attack."""
    if not is_rt(runtime_path()):
        pytest.skip("rt's lxc_system plugin")
    return lambda args: system_bundle(tmp_path, args, with_attack(attack_dir))


def test_system_container_init_and_exec(runtime, system_attack_bundle, attack_dir, no_leaks):
    """lxc_system: the shebang script as the init, then the watcher and exec in a running one."""
    before = host_binaries(runtime)
    runtime.create("sysinit", system_attack_bundle(["/attack/evil"]), check=True)
    console = os.path.join(runtime.root, "sysinit", "console.log")
    runtime("start", "sysinit", check=True)
    for _ in range(200):
        if runtime.state("sysinit")["status"] == "stopped":
            break
        time.sleep(0.05)
    log = open(console, errors="replace").read()
    assert "rt's exec helper, not for direct use" in log and "Python" not in log, log
    runtime("delete", "--force", "sysinit", check=True)

    runtime.create("sysx", system_attack_bundle(["/bin/sh", "-c", "sleep 100"]), check=True)
    runtime("start", "sysx", check=True)
    check_report(watch_exec(runtime, "sysx", attack_dir))
    runtime("delete", "--force", "sysx", check=True)
    assert host_binaries(runtime) == before


@pytest.mark.parametrize("fs", ["proc", "sys"])
def test_proc_and_sys_must_be_ordinary_directories(runtime, tmp_path, fs, no_leaks):
    """CVE-2023-28642 class: an image whose /proc (or /sys) is a symlink must not get procfs
    somewhere else (under /tmp's tmpfs it vanished, and with it the LSM attr files)."""
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    target = rootfs / fs
    if target.exists():
        target.rmdir()
    target.symlink_to(f"/tmp/{fs}-elsewhere")
    cfg = base_config(str(rootfs), ["true"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    p = runtime("run", "--bundle", str(tmp_path / "b"), "symproc")
    assert p.returncode != 0
    kind = "proc" if fs == "proc" else "sysfs"
    assert "must be mounted on ordinary directory" in p.stderr and kind in p.stderr, p.stderr


def test_preserve_fds_with_gaps_pass_none_of_the_runtimes_own(runtime, make_bundle, tmp_path, no_leaks):
    """--preserve-fds 4 with only fd 3 open: the free numbers 4-6 must not carry the runtime's
    own fds (its sealed helper, the init's pidfd) into the container."""
    look = "for f in /proc/self/fd/*; do readlink $f; done; true"

    def with_fd3(*args):  # the caller opens fd 3 alone (a shell, so pytest's own fds stay as they are)
        return subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(tmp_path), runtime.path, "--root",
                               runtime.root, *args], capture_output=True, text=True, timeout=60)
    p = with_fd3("run", "--preserve-fds", "4", "--bundle", make_bundle(["sh", "-c", look]), "gaps")
    assert p.returncode == 0, p.stderr
    runtime.create("gapx", make_bundle(["sleep", "100"]), check=True)
    runtime("start", "gapx", check=True)
    e = with_fd3("exec", "--preserve-fds", "4", "gapx", "sh", "-c", look)
    assert e.returncode == 0, e.stderr
    runtime("delete", "--force", "gapx", check=True)
    for out in (p.stdout, e.stdout):
        assert "memfd" not in out and "pidfd" not in out, out


def test_privileged_system_container_lacks_dac_read_search(runtime, system_attack_bundle, no_leaks):
    """open_by_handle_at with CAP_DAC_READ_SEARCH reaches any host file by inode number
    ('shocker'): a system container without a user namespace does not get that capability."""
    runtime.create("shocker", system_attack_bundle(["/bin/sh", "-c", "sleep 100"]), check=True)
    runtime("start", "shocker", check=True)
    p = runtime("exec", "shocker", "grep", "^Cap", "/proc/self/status")
    runtime("delete", "--force", "shocker", check=True)
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in p.stdout.splitlines()}
    assert caps["CapEff"] & (1 << 21), p.stdout  # it is still a privileged system container (SYS_ADMIN)
    for kind in ("CapBnd", "CapEff", "CapPrm"):
        assert not caps[kind] & (1 << 2), f"{kind} has CAP_DAC_READ_SEARCH: {p.stdout}"


def test_no_volume_inside_proc(runtime, tmp_path, no_leaks):
    """A volume at /x, where the image makes /x a symlink to /proc/thread-self, would put files of
    the image's choosing where the runtime writes the LSM label (CVE-2019-19921): refused, as by runc."""
    rootfs = tmp_path / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs-busybox"), str(rootfs)], check=True)
    (rootfs / "x").symlink_to("/proc/thread-self")
    fake = tmp_path / "fakeattr"
    (fake / "apparmor").mkdir(parents=True)
    cfg = base_config(str(rootfs), ["true"])
    cfg["mounts"].append({"destination": "/x/attr", "type": "bind", "source": str(fake), "options": ["rbind"]})
    p = runtime("run", "--bundle", write_bundle(tmp_path / "b", cfg), "inproc")
    assert p.returncode != 0 and "cannot be mounted because it is inside /proc" in p.stderr, p.stderr


def test_restore_mount_points_stay_inside_the_rootfs(tmp_path):
    """restore makes the spec's missing mount points in the rootfs (CRIU does not): a symlink
    in the image must not send them to host paths (CVE-2021-30465's class)."""
    from rt.core import criu
    rootfs, outside = tmp_path / "rootfs", tmp_path / "host"
    rootfs.mkdir()
    outside.mkdir()
    (rootfs / "abs").symlink_to(str(outside))              # absolute: the rootfs's own /tmp/.../host
    (rootfs / "up").symlink_to("../../../../../../../" + str(outside).lstrip("/"))
    src = tmp_path / "hosts"
    src.write_text("x")
    config = {"mounts": [{"destination": "/abs/file", "type": "bind", "source": str(src), "options": ["bind"]},
                         {"destination": "/up/dir", "type": "bind", "source": str(tmp_path), "options": ["bind"]},
                         {"destination": "/etc/plain", "type": "bind", "source": str(src), "options": ["bind"]}]}
    criu.prepare_mountpoints(config, str(rootfs))
    assert os.listdir(outside) == []  # nothing made on the host
    assert (rootfs / "etc" / "plain").is_file()  # an ordinary one is made, in the rootfs
