"""The module behind WasmBackend.workload: conformance.wat, compiled once per process."""
import functools
import os

ACTIONS = ("sleep", "exit", "print", "getenv", "cat", "write")
WAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance.wat")


@functools.cache
def module_bytes() -> bytes:
    import wasmtime
    with open(WAT) as f:
        return bytes(wasmtime.wat2wasm(f.read()))
