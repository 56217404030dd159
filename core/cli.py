"""The runc-compatible command line. Parsing only; each verb lives in rt.core.verbs.<verb>.

A small table-driven parser instead of argparse: it follows runc's conventions
(flags before positional arguments, `--flag value` and `--flag=value`) and keeps
the short verbs' start-up cheap.
"""
import importlib
import os
import sys

from . import log
from .errors import NeedsCaller, RtError, front

VERSION = "0.1.0"
from .ocistate import OCI_VERSION  # noqa: F401  (rt --version, and the features document)

B, S, I, L = "bool", "str", "int", "list"
GLOBAL = [
    (("--root",), "root", S, None, "root directory for storage of container state "
     "(default /run/rt; $XDG_RUNTIME_DIR/rt for a user other than root, as runc)"),
    (("--log",), "log", S, None, "log file (default: stderr)"),
    (("--log-format",), "log_format", S, "text", "log format: text or json"),
    (("--debug",), "debug", B, False, "enable debug logging"),
    (("--systemd-cgroup",), "systemd_cgroup", B, False, "use systemd for cgroups: a transient unit per "
     "container over D-Bus (create fails where systemd is not running, as runc's)"),
    (("--rootless",), "rootless", S, "auto", "rootless mode: true, false or auto (when not root); without a "
     "cgroup delegated to the user the container runs without one"),
    (("--criu",), "criu", S, None, "path to the criu binary for checkpoint and restore (default: criu in $PATH)"),
    (("--plugin",), "plugin", S, None, "isolation plugin to use (overrides the default; see `rt features`)"),
]
_CREATE = [
    (("--bundle", "-b"), "bundle", S, ".", "path to the bundle directory"),
    (("--console-socket",), "console_socket", S, None, "unix socket that receives the pty master"),
    (("--pid-file",), "pid_file", S, None, "file to write the container process pid to"),
    (("--no-pivot",), "no_pivot", B, False, "use MS_MOVE + chroot instead of pivot_root"),
    (("--no-new-keyring",), "no_new_keyring", B, False, "do not create a new session keyring"),
    (("--preserve-fds",), "preserve_fds", I, 0, "pass N additional fds (from 3) to the container"),
]
VERBS = {
    "create": (_CREATE, ["container-id"], "create a container"),
    "run": (_CREATE + [(("--detach", "-d"), "detach", B, False, "detach from the container"),
                       (("--keep",), "keep", B, False, "keep the container's state after it exits"),
                       (("--no-subreaper",), "no_subreaper", B, False, "disable the use of the subreaper used "
                        "to reap reparented processes (rt still adopts the init, as runc's is its child)")],
            ["container-id"], "create and start a container"),
    "start": ([(("--wait-ready",), "wait_ready", B, False, "return once the workload is ready (an init: "
                "sd_notify READY=1, or its first service)"),
               (("--ready-timeout",), "ready_timeout", S, "120", "seconds --wait-ready waits")],
              ["container-id"], "start a created container"),
    "state": ([], ["container-id"], "output the state of a container"),
    "kill": ([(("--all", "-a"), "all", B, False, "send the signal to all processes")],
             ["container-id", "[signal]"], "send a signal to the container's init (default SIGTERM)"),
    "delete": ([(("--force", "-f"), "force", B, False, "kill the container first if it is running")],
               ["container-id"], "delete a container's resources"),
    "list": ([(("--format", "-f"), "format", S, "table", "table or json"),
              (("--quiet", "-q"), "quiet", B, False, "print only the ids")], [], "list containers"),
    "ps": ([(("--format", "-f"), "format", S, "table", "table or json")],
           ["container-id", "[ps options]"], "list processes in a container"),
    "exec": ([(("--console-socket",), "console_socket", S, None, "pty master receiver"),
              (("--cwd",), "cwd", S, None, "working directory"),
              (("--env", "-e"), "env", L, [], "set an environment variable"),
              (("--tty", "-t"), "tty", B, False, "allocate a pty"),
              (("--user", "-u"), "user", S, None, "uid[:gid]"),
              (("--additional-gids", "-g"), "additional_gids", L, [], "additional gids"),
              (("--process", "-p"), "process", S, None, "path to a process.json"),
              (("--detach", "-d"), "detach", B, False, "detach"),
              (("--pid-file",), "pid_file", S, None, "pid file"),
              (("--process-label",), "process_label", S, None, "SELinux label"),
              (("--apparmor",), "apparmor", S, None, "AppArmor profile"),
              (("--no-new-privs",), "no_new_privs", B, False, "set no_new_privs"),
              (("--cap", "-c"), "cap", L, [], "add a capability"),
              (("--preserve-fds",), "preserve_fds", I, 0, "pass N additional fds"),
              (("--cgroup",), "cgroup", L, [], "run the process in an existing subgroup: [CONTROLLER[,...]:]PATH"),
              (("--ignore-paused",), "ignore_paused", B, False, "allow exec in a paused container")],
             ["container-id", "command", "[args...]"], "run a new process in a running container"),
    "events": ([(("--interval",), "interval", S, "5s", "set the stats collection interval"),
                (("--stats",), "stats", B, False, "display the container's stats then exit")],
               ["container-id"], "display container events such as OOM notifications and cpu, memory and IO usage statistics"),
    "pause": ([], ["container-id"], "freeze every process of a container"),
    "resume": ([], ["container-id"], "thaw a paused container"),
    "update": ([(("--resources", "-r"), "resources", S, None, "linux.resources JSON file, or - for stdin "
                  "(then the other options are ignored, as by runc)"),
                (("--blkio-weight",), "blkio_weight", S, None, "per cgroup block IO weight, 10 to 1000"),
                (("--cpu-period",), "cpu_period", S, None, "CPU CFS period (usecs); 0 for the system default"),
                (("--cpu-quota",), "cpu_quota", S, None, "CPU CFS hardcap limit (usecs) in a period"),
                (("--cpu-share", "--cpu-shares"), "cpu_shares", S, None, "CPU shares (relative weight)"),
                (("--cpu-rt-period",), "cpu_rt_period", S, None, "CPU realtime period (usecs)"),
                (("--cpu-rt-runtime",), "cpu_rt_runtime", S, None, "CPU realtime hardcap limit (usecs)"),
                (("--cpuset-cpus",), "cpuset_cpus", S, None, "CPU(s) to use"),
                (("--cpuset-mems",), "cpuset_mems", S, None, "memory node(s) to use"),
                (("--memory",), "memory", S, None, "memory limit (bytes, or 100M, 1g...)"),
                (("--memory-reservation",), "memory_reservation", S, None, "memory soft limit (bytes or units)"),
                (("--memory-swap",), "memory_swap", S, None, "memory + swap limit (bytes or units); -1 unlimited"),
                (("--pids-limit",), "pids_limit", S, None, "maximum number of pids"),
                (("--l3-cache-schema",), "l3_cache_schema", S, None, "Intel RDT/CAT L3 cache schema"),
                (("--mem-bw-schema",), "mem_bw_schema", S, None, "Intel RDT/MBA memory bandwidth schema")],
               ["container-id"], "update a container's resource limits"),
    "checkpoint": ((_CR := [  # shared with restore, as runc's
        (("--image-path",), "image_path", S, None, "path for criu image files (default ./checkpoint)"),
        (("--work-path",), "work_path", S, None, "path for criu work files and logs (default: the image path)"),
        (("--tcp-established",), "tcp_established", B, False, "allow open tcp connections"),
        (("--ext-unix-sk",), "ext_unix_sk", B, False, "allow external unix sockets"),
        (("--shell-job",), "shell_job", B, False, "allow shell jobs"),
        (("--lazy-pages",), "lazy_pages", B, False, "use userfaultfd to lazily restore memory pages (unsupported)"),
        (("--file-locks",), "file_locks", B, False, "handle file locks"),
        (("--manage-cgroups-mode",), "manage_cgroups_mode", S, None, "cgroups mode: soft (default), full, strict, ignore"),
        (("--empty-ns",), "empty_ns", S, None, "create a namespace, but do not restore its properties (network)"),
        (("--auto-dedup",), "auto_dedup", B, False, "enable auto deduplication of memory images"),
    ]) + [(("--parent-path",), "parent_path", S, None, "path for previous criu image files in pre-dump"),
          (("--leave-running",), "leave_running", B, False, "leave the process running after checkpointing"),
          (("--status-fd",), "status_fd", S, None, "criu writes \\0 to this FD once lazy-pages is ready (unsupported)"),
          (("--page-server",), "page_server", S, None, "ADDRESS:PORT of the page server"),
          (("--pre-dump",), "pre_dump", B, False, "dump the container's memory only, leave it running")],
        ["container-id"], "checkpoint a running app_single container with CRIU"),
    "restore": (_CR + [(("--bundle", "-b"), "bundle", S, ".", "path to the bundle directory"),
                       (("--detach", "-d"), "detach", B, False, "detach from the container's process"),
                       (("--pid-file",), "pid_file", S, None, "file to write the process id to"),
                       (("--console-socket",), "console_socket", S, None, "pty master receiver (unsupported)"),
                       (("--no-subreaper",), "no_subreaper", B, False, "disable the use of the subreaper"),
                       (("--no-pivot",), "no_pivot", B, False, "accepted for runc compatibility (criu mounts the root)"),
                       (("--lsm-profile",), "lsm_profile", S, None, "LSM profile TYPE:NAME for the restored process"),
                       (("--lsm-mount-context",), "lsm_mount_context", S, None, "LSM mount context for the restored mounts")],
                ["container-id"], "restore a container from a CRIU checkpoint"),
    "features": ([], [], "show what this runtime and its plugins support"),
    "bench": ([(("--plugins",), "plugins", S, None, "rt plugins to measure, comma-separated (default: all)"),
               (("--peers",), "peers", S, None, "peers to compare with: runc,crun,lxc,qemu (default: all installed)"),
               (("--runs", "-n"), "runs", I, 5, "timed runs per target"),
               (("--density",), "density", I, 8, "most instances to start for the density curve (0: skip)"),
               (("--window",), "window", S, "10", "seconds in which density counts instances started"),
               (("--command",), "command", S, "/bin/true", "the command that exits at once (run, exec)"),
               (("--idle",), "idle", S, "sleep 1000000", "what a running instance runs (app and VM levels)"),
               (("--init",), "init", S, "/sbin/init", "a system container's init"),
               (("--core",), "core", S, "warm,none", "rt with a warm resident core (warm), in-process (none), or both"),
               (("--json",), "json", B, False, "print the JSON document instead of the table"),
               (("--output", "-o"), "output", S, None, "directory for results.json, table.txt and charts (default ./rt-bench)")],
              ["[bundle]"], "measure what each isolation level costs for a bundle, next to runc, crun, LXC and QEMU"),
    "core": ([(("--idle-timeout",), "idle_timeout", S, None, "seconds without a request before the core exits "
                "(0: never; default $RT_CORE_IDLE or 900)"),
              (("--ready-fd",), "ready_fd", S, None, "(internal) fd to report readiness on"),
              (("--rehome",), "rehome", B, False, "(internal) move into a cgroup of the core's own")],
             ["start|stop|status|serve"], "manage the resident core that serves this state root"),
    "conformance": ([(("--runtime",), "runtime", S, None, "check this runtime binary instead (runc proves the kit)")],
                    ["PLUGIN", "[pytest args]"], "run the conformance kit against an isolation kind (needs rt-runtime[test])"),
    "spec": ([(("--bundle", "-b"), "bundle", S, ".", "where to write config.json"),
              (("--rootless",), "rootless", B, False, "a spec for a rootless container")],
             [], "create a new config.json"),
}


OWN_VERBS = {"bench", "core"}  # not runc's: their flags may follow their arguments


class Opts(dict):
    __getattr__ = dict.get


def _parse_flags(argv: list[str], table, where: str, anywhere: bool = False) -> tuple[Opts, list[str]]:
    """runc's convention: flags, then positional arguments. With `anywhere` (rt's own verbs)
    flags may also follow them."""
    opts = Opts({key: (list(d) if kind == L else d) for _, key, kind, d, _ in table})
    index = {name: (key, kind) for names, key, kind, _, _ in table for name in names}
    i = 0
    pos: list[str] = []
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return opts, pos + argv[i + 1:]
        if not a.startswith("-") or a == "-":
            if anywhere:
                pos.append(a)
                i += 1
                continue
            break
        name, eq, value = a.partition("=")
        if name not in index:
            raise RtError(f"flag provided but not defined: {name}" + (f" ({where})" if where else ""))
        key, kind = index[name]
        if kind == B:
            opts[key] = value.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise RtError(f"flag needs an argument: {name}")
                value = argv[i]
            if kind == I:
                try:
                    value = int(value)
                except ValueError:
                    raise RtError(f"invalid value {value!r} for flag {name}: must be an integer")
            if kind == L:
                opts[key].append(value)
            else:
                opts[key] = value
        i += 1
    return opts, pos + argv[i:]


def usage(verb: str | None = None, prog: str = "rt") -> str:
    prog = os.path.basename(prog) or "rt"
    if verb:
        table, pos, helptext = VERBS[verb]
        lines = [f"usage: {prog} {verb} [options] {' '.join(pos)}", f"  {helptext}"]
        lines += [f"  {', '.join(n):28} {h}" for n, _, _, _, h in table]
        return "\n".join(lines) + "\n"
    lines = [f"usage: {prog} [global options] COMMAND [options] [arguments]", "", "commands:"]
    lines += [f"  {v:10} {h}" for v, (_, _, h) in VERBS.items()]
    added = _plugin_verbs()
    if added:
        lines += ["", "commands from plugins:"] + [f"  {v:10} {h} [{p}]" for v, h, p in added]
    lines += ["", "global options:"] + [f"  {', '.join(n):28} {h}" for n, _, _, _, h in GLOBAL]
    return "\n".join(lines) + "\n"


def _plugin_verbs() -> list[tuple[str, str, str]]:
    """(verb, help, plugin) of the verbs that plugins add; none if the plugins fail to load."""
    from .plugins import Manager
    try:
        return [(v.name, v.help, v.plugin) for v in Manager.shared().registry.verbs.values()]
    except RtError:
        return []


def default_root() -> str:
    """runc's rule: /run/runc for root, $XDG_RUNTIME_DIR/runc for anyone else who has one, and
    for root of a user namespace (rootless podman) unless $USER is root. core/client.c has the
    same rule."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg:
        return "/run/rt"
    if os.geteuid() != 0:
        return os.path.join(xdg, "rt")
    try:
        with open("/proc/self/uid_map") as f:
            in_userns = f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        in_userns = False
    return os.path.join(xdg, "rt") if in_userns and os.environ.get("USER", "") != "root" else "/run/rt"


def version_text() -> str:
    return f"rt version {VERSION}\nspec: {OCI_VERSION}\npython: {sys.version.split()[0]}\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """rt's command line; prog is argv[0] (the front end passes the caller's in RT_ARGV0)."""
    argv = sys.argv[1:] if argv is None else argv
    prog = prog or os.environ.pop("RT_ARGV0", None) or sys.argv[0]
    try:
        g, rest = _parse_flags(argv, GLOBAL + [(("--version", "-v"), "version", B, False, ""),
                                               (("--help", "-h"), "help", B, False, "")], "")
        log.configure(g.log, g.log_format, g.debug)
        if g.root is None:
            g["root"] = default_root()
        if g.log_format not in ("text", "json"):
            raise RtError(f"unknown log-format {g.log_format!r}: use text or json")
        if g.version:
            sys.stdout.write(version_text())
            return 0
        if rest and rest[0] in ("help", "h") and len(rest) > 1 and rest[1] in VERBS:
            sys.stdout.write(usage(rest[1], prog))  # runc help VERB
            return 0
        if g.help or not rest or rest[0] in ("help", "h"):
            sys.stdout.write(usage(prog=prog))
            return 0 if (g.help or rest) else 1
        verb, args = rest[0], rest[1:]
        g["prog"] = prog
        fe = front()
        if fe is not None and os.path.abspath(g.root) != fe.root:
            raise NeedsCaller(f"state root {g.root} is not the core's")
        # argv0 rt-NAME picks the plugin, as an explicit choice.
        base = os.path.basename(prog)
        if g.plugin is None and base.startswith("rt-"):
            g["plugin"] = base[3:]
        if verb in VERBS:
            table, _, _ = VERBS[verb]
            if args and args[0] in ("-h", "--help"):
                sys.stdout.write(usage(verb, prog))
                return 0
            opts, pos = _parse_flags(args, table, verb, anywhere=verb in OWN_VERBS)
            mod = importlib.import_module(f"rt.core.verbs.{verb}_cmd" if verb in ("list", "exec", "spec", "core")
                                          else f"rt.core.verbs.{verb}")
            return mod.run(g, opts, pos) or 0
        from .verbs import plugin_verb
        return plugin_verb.run(g, verb, args)
    except RtError as e:
        log.error(e.msg)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # one line, as runc prints; the traceback only with --debug
        if log.debugging():
            import traceback
            log.debug(traceback.format_exc())
        log.error(error_text(e))
        return 1


def error_text(e: Exception) -> str:
    """One line for an unexpected exception; it names the plugin whose code raised it."""
    from rt.spec.errors import SpecError
    from .plugins import describe, plugin_of
    plugin = plugin_of(e)
    if plugin:
        return f"plugin {plugin}: {describe(e)}"
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    if isinstance(e, SpecError):  # its message names the file and the JSON path
        return str(e)
    return describe(e)


def seconds(value: str, flag: str) -> float:
    """A positive number of seconds from a flag, or a clear error naming the flag."""
    try:
        n = float(value)
    except ValueError:
        n = -1
    if n <= 0:
        raise RtError(f"invalid value {value!r} for {flag}: must be a positive number of seconds")
    return n


def need_id(pos: list[str], verb: str) -> str:
    if not pos:
        raise RtError(f'"{verb}" requires a container id')
    return pos[0]
