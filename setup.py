"""Builds rt's sealed exec helper (shim/exec.c) with the package; pyproject.toml holds the rest.

The helper is static (musl-gcc, else cc -static) so that it runs in any container. Without a
compiler the package still installs, and rt builds the helper on first use (rt.core.exechelper).
"""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithExecHelper(build_py):
    def run(self):
        super().run()
        out = "shim" if self.editable_mode else os.path.join(self.build_lib, "rt", "shim")
        os.makedirs(out, exist_ok=True)
        src, dst = os.path.join("shim", "exec.c"), os.path.join(out, "rt-exec")
        for cc in ("musl-gcc", "cc", "gcc"):
            path = shutil.which(cc)
            if path and subprocess.run([path, "-O2", "-static", "-s", "-o", dst, src]).returncode == 0:
                return
        print("warning: rt-exec was not built (no musl-gcc or static cc); rt builds it on first use")


setup(cmdclass={"build_py": BuildPyWithExecHelper})
