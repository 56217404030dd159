"""rt's conformance kit: the checks that every isolation kind owes its callers.

    rt conformance PLUGIN [PYTEST ARGS]     (needs the `test` extra: pip install 'rt-runtime[test]')

It drives the real CLI (`rt --plugin PLUGIN ...`) with bundles on private copies of a busybox
tree. Every kind must pass the basic lifecycle; the rest is checked for what the backend
class declares in `supports` (CAPABILITIES below). A kind that does not run the rootfs's own
programs (a VM image, a WebAssembly module) gives the process for each abstract action
through `Backend.workload`. `--runtime runc` runs the same checks on runc, which proves them.
"""
import os
import sys

# What a backend may declare in `supports`; each one turns on the checks named after it.
CAPABILITIES = {
    "stdio": "the process gets the caller's stdin, stdout and stderr (else the kit reads its output on a terminal)",
    "posix": "runs the rootfs's own executables (busybox sh): namespaces and the process settings seen inside",
    "namespaces": "the spec's namespaces as the host kernel makes them (PID 1, only lo), maskedPaths, readonlyPaths",
    "exec": "exec runs a process in a running container and returns its exit code",
    "ps": "ps lists the container's processes",
    "kill-all": "kill --all signals every process of the container",
    "pause": "pause and resume freeze and thaw it",
    "update": "update changes its resource limits",
    "terminal": "process.terminal through --console-socket",
    "hooks": "the runtime hooks (prestart, createRuntime, poststart, poststop) with the state on stdin",
    "userns": "a user namespace from uidMappings and gidMappings",
}

# The abstract actions of `Backend.workload` and what the process must do for each.
ACTIONS = {
    "sleep": "run until signalled",
    "exit": "(CODE) exit with CODE, printing nothing",
    "print": "(OUT, ERR, CODE) write OUT and a newline to stdout, ERR and a newline to stderr, exit CODE",
    "getenv": "(NAME) print the variable's value and a newline",
    "cat": "(PATH) print the file's contents",
    "write": "(PATH, TEXT) write TEXT to PATH (create or truncate) and exit 0",
}


def busybox_workload(action: str, *params: str) -> list[str]:
    """process.args for `action` in a busybox rootfs (the default `Backend.workload`)."""
    if action == "sleep":
        return ["sleep", "1000000"]
    if action == "exit":
        return ["sh", "-c", f"exit {int(params[0])}"]
    if action == "print":
        return ["sh", "-c", 'echo "$1"; echo "$2" >&2; exit "$3"', "print", *params]
    if action == "getenv":
        return ["sh", "-c", 'eval "v=\\${$1}"; echo "$v"', "getenv", params[0]]
    if action == "cat":
        return ["cat", params[0]]
    if action == "write":
        return ["sh", "-c", 'printf %s "$2" > "$1"', "write", *params]
    raise ValueError(f"unknown conformance action {action!r}")


def main(plugin: str | None, runtime: str | None, args: list[str]) -> int:
    """Run the kit with pytest in this process; pytest prints its summary."""
    try:
        import pytest
    except ImportError:
        sys.stderr.write("rt conformance needs pytest: install rt with its test extra "
                         "(pip install 'rt-runtime[test]')\n")
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    argv = ["-p", "rt_plugin_testing", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", here,
            "-o", "trio_mode=false", "-q", os.path.join(here, "test_kit.py")]
    if plugin:
        argv += ["--rt-plugin", plugin]
    if runtime:
        argv += ["--rt-runtime", runtime]
    return int(pytest.main(argv + list(args)))
