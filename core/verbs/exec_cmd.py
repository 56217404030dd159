import os

from .. import log, status
from ..cli import need_id
from ..errors import RtError, front, require_caller
from . import backend_of, store


def load_process(opts, pos, c):
    """The process to run: --process FILE, or the container's own process with CLI overrides."""
    import msgspec
    from rt.spec import SpecError, load_bundle, load_config
    from rt.spec.config import Capabilities, Process
    if opts.apparmor:
        raise RtError("exec: --apparmor: AppArmor is not enabled on this host")
    if opts.process_label:
        raise RtError("exec: --process-label: SELinux is not enabled on this host")
    try:  # the config as it was at create (runc keeps it in its state too), not today's bundle
        with open(os.path.join(c.dir, "config.json"), "rb") as f:
            spec = load_config(f.read())
    except FileNotFoundError:
        spec = load_bundle(c.record["bundle"])
    except SpecError as e:
        raise RtError(str(e))
    if opts.process:
        try:
            with open(opts.process, "rb") as f:
                proc = msgspec.json.decode(f.read(), type=Process)
        except OSError as e:
            raise RtError(f"exec: cannot read process file {opts.process}: {e.strerror}")
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise RtError(f"exec: invalid process file {opts.process}: {e}")
    else:
        if len(pos) < 2:
            raise RtError("exec: no command given (use --process or pass the command after the id)")
        proc = msgspec.structs.replace(spec.process, args=pos[1:], terminal=opts.tty)
    changes = {}
    if opts.cwd:
        changes["cwd"] = opts.cwd
    if opts.env:
        changes["env"] = list(proc.env) + list(opts.env)
    if opts.user:
        uid, _, gid = opts.user.partition(":")
        try:
            changes["user"] = msgspec.structs.replace(proc.user, uid=int(uid), gid=int(gid or 0))
        except ValueError:
            raise RtError(f"exec: --user must be uid[:gid], got {opts.user!r}")
    if opts.no_new_privs:
        changes["no_new_privileges"] = True
    if opts.additional_gids:
        try:
            gids = [int(g) for g in opts.additional_gids]
        except ValueError:
            raise RtError("exec: --additional-gids takes numbers")
        changes["user"] = msgspec.structs.replace(changes.get("user", proc.user),
                                                  additional_gids=list(proc.user.additional_gids) + gids)
    if opts.cap:
        from ..plan import CAP_NAMES
        bad = [x for x in opts.cap if x not in CAP_NAMES]
        if bad:
            raise RtError(f"exec: unknown capability {bad[0]!r}")
        old = proc.capabilities or Capabilities()
        changes["capabilities"] = Capabilities(**{
            k: sorted(set(getattr(old, k)) | set(opts.cap))
            for k in ("bounding", "effective", "inheritable", "permitted", "ambient")})
    if opts.tty:
        changes["terminal"] = True
    proc = msgspec.structs.replace(proc, **changes) if changes else proc
    return proc, (spec.linux.seccomp if spec.linux else None)


def run(g, opts, pos):
    cid = need_id(pos, "exec")
    c = store(g).open(cid)
    s = c.status()
    if s == status.PAUSED and not opts.ignore_paused:
        raise RtError("cannot exec in a paused container (use --ignore-paused to override)")
    if s != status.PAUSED:
        status.check("exec", s, cid)
    proc, seccomp = load_process(opts, pos, c)
    be = backend_of(c)
    listener = None
    if not opts.detach:
        from rt.shim.spawn import adopt_orphans
        adopt_orphans()
        if proc.terminal and not opts.console_socket:  # a foreground terminal: relay it ourselves
            require_caller("a foreground terminal is relayed by the caller's process")
            from ..relay import ConsoleListener
            listener = ConsoleListener()
            opts["console_socket"] = listener.path
    try:
        req = {"process": proc, "seccomp": seccomp, "preserve_fds": opts.preserve_fds or 0,
               "console_socket": opts.console_socket, "warn": log.warn_user}
        if opts.cgroup:
            req["cgroup"] = opts.cgroup  # backends that cannot place it refuse the key
        pid = be.exec(c, req)
        master = listener.receive() if listener else None
    finally:
        if listener:
            listener.close()
    if opts.pid_file:
        from ..store import atomic_write
        atomic_write(os.path.abspath(opts.pid_file), str(pid).encode(), 0o644)
    if opts.detach:
        return 0
    fe = front()
    if fe is not None:  # the front end is the process's subreaper: it waits for it
        fe.hand_over(pid, None)
        return 0
    if master is not None:
        from ..relay import relay
        return relay(master, pid)
    from .run import wait_exit
    return wait_exit(pid)
