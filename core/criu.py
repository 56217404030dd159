"""Checkpoint and restore of app_single containers with CRIU.

We drive the `criu` binary through its command line, not its RPC (`criu swrk`): the RPC
needs protobuf bindings (pycriu) that rt does not depend on, while every option we use has
a command-line form (--restore-sibling, --inherit-fd, --external, --cgroup-root,
--freeze-cgroup) and criu writes its own log files. What only the RPC offers is the notify
callbacks (the orphan pts master of a terminal, network lock hooks): hence no --console-socket.

Image directory: criu's images, descriptors.json (runc's: what fds 0-2 were) and
rt-criu.json (the external mounts' host paths and the external stdio keys).
"""
import json
import os
import subprocess

from .errors import RtError

CHECKPOINT_LOG, RESTORE_LOG = "dump.log", "restore.log"
EXT_NETNS = "extRootNetNS"  # crun's and runc's key for a joined network namespace
_CG_MODES = ("soft", "full", "strict", "ignore")


def binary(g) -> str:
    import shutil
    path = g.criu or shutil.which("criu") or next((p for p in ("/usr/sbin/criu", "/sbin/criu")
                                                   if os.access(p, os.X_OK)), None)
    if not path or not os.access(path, os.X_OK):
        raise RtError(f"criu not found{f' at {g.criu}' if g.criu else ''}: checkpoint and restore need "
                      "CRIU (Debian package criu, or --criu PATH)")
    return path


def check(criu: str) -> None:
    """`criu check` must pass; its last line says why not."""
    if os.geteuid() != 0:
        raise RtError("checkpoint and restore need root (CRIU does)")
    try:
        p = subprocess.run([criu, "check"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RtError(f"cannot run {criu} check: {e}")
    if p.returncode != 0:
        lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
        raise RtError(f"criu check fails on this host, so CRIU cannot checkpoint or restore here: "
                      f"{lines[-1] if lines else f'exit status {p.returncode}'}")


def _tail(path: str, n: int = 8) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return f"(no log at {path})"
    errs = [ln for ln in lines if "Error" in ln]
    return " | ".join((errs or lines)[-n:])


def _run(cmd: list[str], log: str, what: str, **kw) -> None:
    from . import log as rtlog
    rtlog.debug("criu: " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
    except OSError as e:
        raise RtError(f"{what}: cannot run {cmd[0]}: {e.strerror}")
    if p.returncode != 0:
        raise RtError(f"{what}: criu failed (exit status {p.returncode}); log {log}: {_tail(log)}")


def common_flags(opts) -> list[str]:
    out = [f for f, on in (("--tcp-established", opts.tcp_established), ("--ext-unix-sk", opts.ext_unix_sk),
                           ("--shell-job", opts.shell_job), ("--file-locks", opts.file_locks),
                           ("--auto-dedup", opts.auto_dedup)) if on]
    mode = opts.manage_cgroups_mode or "soft"
    if mode not in _CG_MODES:
        raise RtError(f"invalid --manage-cgroups-mode {mode!r}: soft, full, strict or ignore")
    out.append(f"--manage-cgroups={mode}")
    if opts.empty_ns:
        if opts.empty_ns != "network":  # as runc: the only one criu can leave empty
            raise RtError(f"--empty-ns {opts.empty_ns}: only network is supported")
        out += ["--empty-ns", "net"]
    if opts.lazy_pages:
        raise RtError("--lazy-pages is not supported by rt (it needs criu's lazy-pages daemon and page server)")
    return out


def image_dirs(opts) -> tuple[str, str]:
    image = os.path.abspath(opts.image_path or "checkpoint")  # runc's default: ./checkpoint
    work = os.path.abspath(opts.work_path) if opts.work_path else image
    for d in {image, work}:
        try:
            os.makedirs(d, 0o700, exist_ok=True)
        except OSError as e:
            raise RtError(f"cannot create {d}: {e.strerror}")
    return image, work


# --- mounts ---------------------------------------------------------------------
def _mountinfo(path: str) -> list[dict]:
    out = []
    with open(path) as f:
        for line in f:
            a = line.split()
            sep = a.index("-")
            out.append({"id": int(a[0]), "dev": a[2], "root": _unescape(a[3]), "at": _unescape(a[4]),
                        "fstype": a[sep + 1]})
    return out


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _under(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def _config_binds(config: dict, bundle: str) -> dict[str, str]:
    """destination -> host source of the spec's bind mounts (runc declares them all external)."""
    out = {}
    for m in config.get("mounts") or []:
        opts = m.get("options") or []
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = m.get("source") or ""
            out[os.path.normpath(m["destination"])] = src if os.path.isabs(src) else os.path.join(bundle, src)
    return out


def external_mounts(pid: int, config: dict, bundle: str) -> dict[str, str]:
    """The container's mounts that criu cannot find inside it, as {mount point: host path}:
    the spec's binds (their sources from the spec, as runc) and rt's cgroup binds of a
    container without a cgroup namespace. Any other mount from outside (one the container
    made with a host path it kept) is refused: its path could be swapped before a restore."""
    inside = _mountinfo(f"/proc/{pid}/mountinfo")
    host = _mountinfo("/proc/self/mountinfo")
    binds = _config_binds(config, bundle)
    cgroup_at = [os.path.normpath(m["destination"]) for m in config.get("mounts") or []
                 if m.get("type") in ("cgroup", "cgroup2")]
    out = {}
    for m in inside:
        if m["at"] == "/" or m["at"] in binds:
            continue
        if any(n is not m and n["dev"] == m["dev"] and _under(m["root"], n["root"])
               and not (n["root"] == m["root"] and n["id"] > m["id"]) for n in inside) or m["root"] == "/":
            continue  # criu finds its source inside the container
        if not (m["fstype"] in ("cgroup", "cgroup2") and any(_under(m["at"], at) for at in cgroup_at)):
            raise RtError(f"checkpoint: the container's mount {m['at']!r} ({m['fstype']}) comes from outside it "
                          "and not from the spec: rt checkpoints only the spec's mounts")
        for h in host:
            if h["dev"] == m["dev"] and _under(m["root"], h["root"]):
                rest = m["root"][len(h["root"].rstrip("/")):]
                out[m["at"]] = os.path.normpath(h["at"] + "/" + rest.lstrip("/"))
                break
        else:
            raise RtError(f"checkpoint: the host path of the container's cgroup mount {m['at']!r} is unknown")
    out.update(binds)
    for at in out:
        if any(ch in at for ch in "[]:\n\t") or not at.startswith("/"):
            raise RtError(f"checkpoint: mount point {at!r}: criu's --external cannot name it")
    return out


# --- stdio ----------------------------------------------------------------------
def stdio_of(pid: int, inside: set[int], idents: dict) -> tuple[list[str], dict[int, str]]:
    """runc's descriptors.json (the targets of fds 0-2) and {fd: criu key} of those that come
    from outside the container: pipes keep criu's own key, files get file[MNT:INODE] (and
    their device and inode in `idents`, which restore checks before it hands one back)."""
    links, keys = [], {}
    idents.clear()
    for fd in range(3):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            links.append("")
            continue
        links.append(link)
        if link.startswith("pipe:"):
            keys[fd] = link
        elif link.startswith("/"):
            mnt = None
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("mnt_id:"):
                        mnt = int(line.split()[1])
            if mnt is not None and mnt not in inside:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                keys[fd] = f"file[{mnt:x}:{st.st_ino:x}]"
                idents[fd] = [st.st_dev, st.st_ino]
    return links, keys


# --- checkpoint -----------------------------------------------------------------
def dump(c, opts, criu: str, config: dict) -> None:
    pid = c.pid
    if opts.status_fd not in (None, "", "-1"):
        raise RtError("--status-fd is only used with --lazy-pages, which rt does not support")
    image, work = image_dirs(opts)
    verb = "pre-dump" if opts.pre_dump else "dump"
    cmd = [criu, verb, "-t", str(pid), "-D", image, "-W", work, "-o", CHECKPOINT_LOG, "-v4",
           "--root", c.record.get("rootfs") or f"/proc/{pid}/root"]
    cmd += common_flags(opts)
    cg = c.extra.get("cgroup")
    if cg:
        from .cgroups import Cgroup
        dirs = Cgroup(cg).dirs()
        freezer = dirs.get("") or dirs.get("freezer")
        if freezer:
            cmd += ["--freeze-cgroup", freezer]
    if opts.pre_dump or opts.parent_path:
        cmd.append("--track-mem")
    if opts.parent_path:
        if os.path.isabs(opts.parent_path):
            raise RtError("--parent-path must be relative to the image path (e.g. ../pre-dump)")
        cmd += ["--prev-images-dir", opts.parent_path]
    if opts.page_server:
        addr, _, port = opts.page_server.rpartition(":")
        if not addr or not port.isdigit():
            raise RtError(f"--page-server {opts.page_server!r}: ADDRESS:PORT is needed")
        cmd += ["--page-server", "--address", addr, "--port", port]
    if opts.leave_running and not opts.pre_dump:
        cmd.append("--leave-running")
    if _outside_session(pid):  # criu cannot dump it, not even with --shell-job
        raise RtError(f"checkpoint {c.id}: the container's init is not in a session of its own pid namespace, "
                      "which CRIU needs (a container made by an rt from before its processes called setsid())")
    if not opts.pre_dump:
        mounts = external_mounts(pid, config, c.record.get("bundle", ""))
        for at in sorted(mounts):
            cmd += ["--external", f"mnt[{at}]:{at}"]
        inside = {m["id"] for m in _mountinfo(f"/proc/{pid}/mountinfo")}
        idents: dict[int, list[int]] = {}
        links, keys = stdio_of(pid, inside, idents)
        for fd, key in keys.items():
            if key.startswith("file["):
                cmd += ["--external", key]
        for ns in (config.get("linux") or {}).get("namespaces") or []:
            if ns.get("type") == "network" and ns.get("path"):
                cmd += ["--external", f"net[{os.stat(ns['path']).st_ino}]:{EXT_NETNS}"]
        _write_json(os.path.join(image, "descriptors.json"), links)
        _write_json(os.path.join(image, "rt-criu.json"), {"mounts": mounts, "stdio": keys, "stdio_ids": idents})
    _run(cmd, os.path.join(work, CHECKPOINT_LOG), f"checkpoint {c.id}")


def _outside_session(pid: int) -> bool:
    """Its session leader is outside its pid namespace (its session id there is 0)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSsid:"):
                    return line.split()[-1] == "0"
    except OSError:
        pass
    return False


def _write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


# --- restore --------------------------------------------------------------------
def restore_cmd(criu: str, opts, image: str, work: str, root: str, cgroup_path: str | None, config: dict,
                bundle: str, pidfile: str) -> tuple[list[str], list[int]]:
    """criu's restore command line and the fds it must inherit."""
    try:
        with open(os.path.join(image, "rt-criu.json")) as f:
            saved = json.load(f)
    except FileNotFoundError:
        saved = {"mounts": {}, "stdio": {}}
        try:  # a runc image: its pipes
            with open(os.path.join(image, "descriptors.json")) as f:
                saved["stdio"] = {str(i): s for i, s in enumerate(json.load(f)) if s.startswith("pipe:")}
        except (OSError, ValueError):
            pass
    except (OSError, ValueError) as e:
        raise RtError(f"restore: {image}/rt-criu.json: {e}")
    cmd = [criu, "restore", "-D", image, "-W", work, "-o", RESTORE_LOG, "-v4", "--root", root,
           "--restore-detached", "--restore-sibling", "--pidfile", pidfile]
    cmd += common_flags(opts)
    if opts.lsm_profile:
        cmd += ["--lsm-profile", opts.lsm_profile]
    if opts.lsm_mount_context:
        cmd += ["--lsm-mount-context", opts.lsm_mount_context]
    if cgroup_path:
        cmd += ["--cgroup-root", cgroup_path]
    mounts = dict(saved.get("mounts") or {})
    mounts.update(_config_binds(config, bundle))  # the binds of the bundle it is restored with
    for at, src in sorted(mounts.items()):
        if src is None:
            raise RtError(f"restore: mount {at} came from outside the container and its host path is unknown")
        cmd += ["--external", f"mnt[{at}]:{src}"]
    # stdio: a file is reopened from descriptors.json's path only if it is still the very file
    # the container had (device and inode): the path is the container's to choose. Otherwise,
    # and for pipes, the caller's own fd takes its place, as runc's pipes do.
    try:
        with open(os.path.join(image, "descriptors.json")) as f:
            links = json.load(f)
    except (OSError, ValueError):
        links = []
    idents = saved.get("stdio_ids") or {}
    fds = []
    seen = set()
    for fd, key in (saved.get("stdio") or {}).items():
        if key in seen:
            continue
        seen.add(key)
        fd = int(fd)
        if key.startswith("file[") and str(fd) in idents and fd < len(links):
            fd = _same_file(links[fd], idents[str(fd)], fd)
        cmd += ["--inherit-fd", f"fd[{fd}]:{key}"]
        fds.append(fd)
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network" and ns.get("path"):
            nfd = os.open(ns["path"], os.O_RDONLY)
            fds.append(nfd)
            cmd += ["--inherit-fd", f"fd[{nfd}]:{EXT_NETNS}"]
    return cmd, fds


def _same_file(path, ident, fallback: int) -> int:
    """An O_PATH fd of `path` if it is the file `ident` ([dev, ino]) names, a regular file or a
    device; else `fallback`. Checked on the opened fd: a swapped path cannot pass."""
    import stat
    if not isinstance(path, str) or not os.path.isabs(path):
        return fallback
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return fallback
    st = os.fstat(fd)
    if [st.st_dev, st.st_ino] == list(ident) and (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        return fd
    os.close(fd)
    return fallback


def prepare_mountpoints(config: dict, root: str) -> None:
    """Mount points of the spec's mounts that are not on a tmpfs must exist in the rootfs
    (criu does not make them); as runc and crun, even on a read-only rootfs. Made by a child
    chrooted into the rootfs: its symlinks resolve inside it, never to host paths."""
    mounts = config.get("mounts") or []
    tmpfs = [os.path.normpath(m["destination"]) for m in mounts if m.get("type") == "tmpfs"]
    todo = []
    for m in mounts:
        dest = os.path.normpath(m["destination"])
        if m.get("type") in ("cgroup", "cgroup2") or any(dest != t and _under(dest, t) for t in tmpfs):
            continue
        src = m.get("source") or ""
        todo.append((dest, os.path.isabs(src) and os.path.exists(src) and not os.path.isdir(src)))
    if not todo:
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.chroot(root)
            os.chdir("/")
            for dest, is_file in todo:
                try:
                    if os.path.lexists(dest):
                        continue
                    if is_file:
                        os.makedirs(os.path.dirname(dest), exist_ok=True)
                        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY, 0o644))
                    else:
                        os.makedirs(dest, exist_ok=True)
                except OSError:
                    pass  # criu says what is missing
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def run_restore(cmd: list[str], fds: list[int], work: str, cid: str, join_dirs: list[str]) -> None:
    def into_cgroup():  # criu's tasks inherit its cgroup (runc puts criu there too)
        for d in join_dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")
    _run(cmd, os.path.join(work, RESTORE_LOG), f"restore {cid}", pass_fds=[f for f in fds if f > 2],
         preexec_fn=into_cgroup, stdin=None)
