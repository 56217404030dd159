"""The container's process for the wasm kind: it runs one WASI (preview1) module in wasmtime.

rt's shim execs it (as `python -I -S -c BOOT CONFIG ARGS...`, with the module's environment in
RT_WASM_ENV_0, RT_WASM_ENV_1, ...; see backend.py) with the
spec's uid, gids, capabilities, rlimits, seccomp filter, cgroup and namespaces already applied.
It is not chrooted: the module reaches files only through WASI preopens,
  "."  the process's cwd, listed first (only when the cwd is not "/"),
  "/"  the rootfs (read-only when root.readonly),
  each directory bind mount of the spec at its destination (read-only with "ro"),
all opened by wasmtime (cap-std), which keeps every lookup inside its directory.

Exit status: the module's proc_exit code; 134 after a trap (as the wasmtime CLI); 127 when
the module is missing and 126 when it cannot be loaded (as a shell); 128+N on signal N.

Signals: the host may be PID 1 of a pid namespace, where a signal without a handler is
dropped, and Python handlers do not run while wasm code runs on the main thread. So TERM,
INT, HUP, QUIT, USR1 and USR2 are blocked in every thread (blocked signals are queued, even
for a namespace's init); the module runs in a worker thread, and the main thread waits for
them in sigwait and exits with 128+N. The worker exits the process when the module ends.
"""
import errno
import json
import os
import signal
import sys
import threading

from .view import View

STOP = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
TRAP_EXIT = 134  # 128 + SIGABRT, what the wasmtime CLI exits with after a trap


class Fatal(Exception):
    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code


def say(msg: str) -> None:
    try:
        os.write(2, f"rt-wasm: {msg}\n".encode(errors="replace"))
    except OSError:
        pass


def main(meta: dict, args: list[str]) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP)  # first: every thread made later inherits it
    env = [os.environ.get(f"RT_WASM_ENV_{i}", "") for i in range(meta.get("nenv", 0))]
    worker = threading.Thread(target=work, args=(meta, args, env), name="wasm", daemon=True)
    worker.start()
    os._exit(128 + signal.sigwait(STOP))


def work(meta: dict, args: list[str], env: list[str]) -> None:
    try:
        code = run(meta, args, env)
    except Fatal as e:
        say(str(e))
        code = e.code
    except BaseException as e:  # never leave the main thread waiting
        say(f"{type(e).__name__}: {e}")
        code = 125
    os._exit(code & 0xFF)


def run(meta: dict, args: list[str], env: list[str]) -> int:
    try:  # the rootfs and the sources, pinned: still the directories they were at create
        view = View(meta["rootfs"], meta["readonly"], meta["binds"], meta.get("ids"))
    except OSError as e:
        raise Fatal(126, f"{e.filename}: {e.strerror}") from None
    cwd = meta["cwd"]
    try:
        guest, fd = view.find_module(args[0], env, cwd)
    except OSError as e:
        missing = e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
        raise Fatal(127 if missing else 126, f"{args[0]}: {e.strerror}") from None
    with open(fd, "rb") as f:
        wasm = f.read()
    if wasm[:4] != b"\0asm":
        raise Fatal(126, f"{guest}: not a WebAssembly module")
    if wasm[4:8] != b"\1\0\0\0":
        raise Fatal(126, f"{guest}: a WebAssembly component, not a core module: rt-wasm runs WASI preview1 modules")

    import wasmtime
    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise Fatal(126, f"{guest}: cannot compile: {e}") from None
    del wasm

    wasi = wasmtime.WasiConfig()
    wasi.argv = args
    wasi.env = [e.split("=", 1) for e in env if "=" in e] + ([] if any(e.startswith("PWD=") for e in env)
                                                              else [("PWD", cwd)])
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    try:
        if cwd != "/":  # first: wasi-libc prefers the later of two equal prefixes ("." and "/" both match "")
            fd = view.open(cwd, os.O_PATH | os.O_DIRECTORY)  # inside the rootfs or a bind, never out
            try:
                wasi.preopen_dir(f"/proc/self/fd/{fd}", ".", not view.locate(cwd)[2])
            finally:
                os.close(fd)  # wasmtime holds its own open directory
        wasi.preopen_dir(view.host_dir(meta["rootfs"]), "/", not meta["readonly"])
        for src, dest, ro in meta["binds"]:
            wasi.preopen_dir(view.host_dir(src), dest, not ro)
    except OSError as e:
        raise Fatal(126, f"cwd {cwd}: {e.strerror}") from None
    except wasmtime.WasmtimeError as e:
        raise Fatal(126, f"cannot preopen the module's directories: {e}") from None

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    try:
        instance = linker.instantiate(store, module)  # runs the module's start function, if any
    except wasmtime.ExitTrap as e:
        return e.code
    except wasmtime.Trap as e:
        say(f"{guest}: {e}")
        return TRAP_EXIT
    except wasmtime.WasmtimeError as e:  # an import that WASI preview1 does not provide
        raise Fatal(126, f"{guest}: cannot instantiate: {e}") from None
    start = instance.exports(store).get("_start")
    if start is None:
        raise Fatal(126, f"{guest}: exports no _start function (not a WASI command)")
    try:
        start(store)
    except wasmtime.ExitTrap as e:
        return e.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
        say(f"{guest}: {e}")
        return TRAP_EXIT
    return 0


if __name__ == "__main__":  # python -m rt_wasm.host CONFIG ARGS... (by hand, for debugging)
    main(json.loads(sys.argv[1]), sys.argv[2:])
