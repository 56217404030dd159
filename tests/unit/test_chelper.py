"""api.build_c_helper: compiled once with the host's cc into a cache keyed by source and
flags; a reason instead of a path when it cannot be built."""
import os
import shutil
import subprocess

import pytest

from rt.core import chelper

pytestmark = pytest.mark.skipif(chelper.compiler() is None, reason="needs cc (scripts/setup installs gcc)")


def test_build_cache_and_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(chelper, "CACHE", str(tmp_path / "cache"))
    src = tmp_path / "hi.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts(GREETING); return 0; }\n')
    path, why = chelper.build(str(src), "hi", ("-DGREETING=\"hello\"",))
    assert why == "" and subprocess.run([path], capture_output=True, text=True).stdout == "hello\n"
    mtime = os.stat(path).st_mtime_ns
    assert chelper.build(str(src), "hi", ("-DGREETING=\"hello\"",)) == (path, "")  # cached
    assert os.stat(path).st_mtime_ns == mtime
    other, _ = chelper.build(str(src), "hi", ("-DGREETING=\"bye\"",))
    assert other != path  # other flags, another binary

    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return }\n")
    path, why = chelper.build(str(bad), "bad")
    assert path is None and "failed" in why
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(os.path.basename(p) for p in (other, chelper.build(
        str(src), "hi", ("-DGREETING=\"hello\"",))[0]))  # nothing half-built left

    monkeypatch.setenv("PATH", "/nonexistent")
    src.write_text(src.read_text() + "\n")  # a new source: not in the cache
    assert chelper.build(str(src), "hi") == (None, "no C compiler (cc); apt install gcc libc6-dev")
    assert shutil.which("cc") is None
