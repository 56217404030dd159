"""rt bench for the wasm kind: rt wasm, next to the same module in a bare host process.

Both run the conformance module (its "sleep" stays up, its "exit 0" is the command that exits
at once) from a scratch directory bound read-only at /.rt-wasm-bench: the user's rootfs is
left as it is, and whatever it holds is what the module's "/" shows.
"""
import json
import os
import sys

from rt.core import api

MOUNT = "/.rt-wasm-bench"
MODULE = MOUNT + "/conformance.wasm"


def _module_dir(ctx) -> str:
    d = ctx.scratch("wasm-module")
    path = os.path.join(d, "conformance.wasm")
    if not os.path.exists(path):
        from .conformance import module_bytes
        with open(path, "wb") as f:
            f.write(module_bytes())
    return d


class WasmTarget(api.bench.OciTarget):
    note = "the conformance module (sleep; exit 0), bound read-only at " + MOUNT

    def prepare(self, ctx) -> None:
        self.module_dir = _module_dir(ctx)
        super().prepare(ctx)

    def adapt(self, ctx, config, role):
        config = super().adapt(ctx, config, role)
        config["process"]["args"] = [MODULE, "sleep"] if role == "up" else [MODULE, "exit", "0"]
        config.setdefault("mounts", []).append({"destination": MOUNT, "type": "bind", "source": self.module_dir,
                                                "options": ["rbind", "ro"]})
        return config

    def exec(self, ctx, iid: str) -> None:
        api.bench.run(self.cli("exec", iid, MODULE, "exit", "0"))


class BareHost(api.bench.BenchTarget):
    """The same module in rt_wasm.host started directly: no container, no cgroup, no namespaces.
    Only its round trip is measured: a bare process has no moment at which it is "up"."""
    name = "wasmtime-py (bare host)"
    level = "wasm"
    peer = True
    note = "rt_wasm.host run directly (no container): what a container adds to a run is the difference"

    def prepare(self, ctx) -> None:
        from .backend import BOOT, host_path
        meta = {"path": host_path(), "rootfs": ctx.rootfs, "readonly": True, "cwd": "/",
                "binds": [[_module_dir(ctx), MOUNT, True]], "nenv": 0}
        self.argv = [sys.executable, "-I", "-S", "-c", BOOT, json.dumps(meta), MODULE, "exit", "0"]

    def roundtrip(self, ctx, iid: str) -> None:
        api.bench.run(self.argv)


def targets() -> list:
    return [WasmTarget("rt wasm", api.bench.rt_argv(), level="wasm", peer=False, plugin="wasm"), BareHost()]
