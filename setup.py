"""Builds rt's native pieces with the package; pyproject.toml holds the rest.

- shim/exec.c -> rt/shim/rt-exec, the sealed exec helper: static (musl-gcc, else cc -static)
  so that it runs in any container. Without a compiler rt builds it on first use.
- core/client.c -> the `rt` command, the front end of the resident core (musl-gcc or cc).
  Without a compiler `rt` is a Python script, the in-process path; `rt-py` is always Python.
- rt/core/_build.py: the build id that the front end and the core compare.
"""
import hashlib
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
try:
    from setuptools.command.build_scripts import build_scripts
except ImportError:  # setuptools 70+: distutils' own, which setuptools provides
    from distutils.command.build_scripts import build_scripts

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("core", "shim", "spec", "plugins")
FALLBACK = os.path.join("build", "rt-frontend", "rt")


def build_id() -> str:
    """A digest of the sources: an upgraded install never talks to an old core."""
    h = hashlib.sha256()
    for top in SOURCES:
        for d, dirs, files in sorted(os.walk(os.path.join(HERE, top))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".c")) and name != "_build.py":
                    with open(os.path.join(d, name), "rb") as f:
                        h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:20]


def compile_c(src: str, dst: str, flags: list[str], compilers=("musl-gcc", "cc", "gcc")) -> bool:
    for cc in compilers:
        path = shutil.which(cc)
        if path and subprocess.run([path, "-O2", *flags, "-o", dst, src]).returncode == 0:
            return True
    return False


class BuildPy(build_py):
    def run(self):
        super().run()
        out = "shim" if self.editable_mode else os.path.join(self.build_lib, "rt", "shim")
        os.makedirs(out, exist_ok=True)
        if not compile_c(os.path.join("shim", "exec.c"), os.path.join(out, "rt-exec"), ["-static", "-s"]):
            print("warning: rt-exec was not built (no musl-gcc or static cc); rt builds it on first use")
        core = "core" if self.editable_mode else os.path.join(self.build_lib, "rt", "core")
        with open(os.path.join(core, "_build.py"), "w") as f:
            f.write(f'BUILD_ID = "{build_id()}"\n')


class BuildScripts(build_scripts):
    """`rt` is the native front end where a C compiler is at hand, else the Python script."""

    def run(self):
        super().run()
        dst = os.path.join(self.build_dir, "rt")
        flags = [f'-DRT_BUILD_ID="{build_id()}"', "-s"]
        if compile_c(os.path.join("core", "client.c"), dst + ".native", ["-static", *flags], ("musl-gcc",)) or \
                compile_c(os.path.join("core", "client.c"), dst + ".native", flags, ("cc", "gcc")):
            os.replace(dst + ".native", dst)
        else:
            print("warning: the native front end (core/client.c) was not built: `rt` is the Python rt")


os.makedirs(os.path.dirname(os.path.join(HERE, FALLBACK)), exist_ok=True)
with open(os.path.join(HERE, FALLBACK), "w") as f:
    f.write("#!python\nimport sys\n\nfrom rt.core.cli import main\n\nsys.exit(main())\n")

setup(cmdclass={"build_py": BuildPy, "build_scripts": BuildScripts}, scripts=[FALLBACK])
