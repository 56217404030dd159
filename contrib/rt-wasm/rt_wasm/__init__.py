"""rt-wasm: WebAssembly (WASI preview1) modules as rt containers, hosted by wasmtime.

rt_wasm.plugin   the entry point (`rt.plugins`): registration, the .wasm claim, bench targets
rt_wasm.backend  WasmBackend: rt's OciBackend with a plan that runs rt_wasm.host
rt_wasm.host     the container's process: one module in wasmtime, with WASI preopens
"""
VERSION = "0.1.0"
