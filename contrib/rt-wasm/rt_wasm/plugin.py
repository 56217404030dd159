"""The entry point of rt-wasm (group `rt.plugins`, name `wasm`): registration, the claim of
bundles whose program is a .wasm file, and the `rt bench` target."""
from rt.core import api

from . import VERSION

RT_API = "1.1"  # the plugin API this is written against (rt.core.api.API_VERSION)


@api.hookimpl
def rt_register(registry):
    registry.add_backend("wasm", "rt_wasm.backend:WasmBackend", version=VERSION,
                         summary="a WASI (preview1) module in wasmtime, hosted by a process in the "
                                 "container's cgroup and namespaces")


@api.hookimpl
def rt_claim(spec):
    """A bundle that names no backend and whose program is a .wasm file runs here."""
    args = spec.process.args if spec.process is not None else []
    return "wasm" if args and args[0].endswith(".wasm") else None


@api.hookimpl
def rt_bench_targets(bench):
    from .bench import targets
    for t in targets():
        bench.add(t)
