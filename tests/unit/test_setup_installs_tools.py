"""A fresh machine has only what scripts/setup installs: every command that the tests and scripts
call must come from a package that setup names (or one those depend on, or one every Debian
machine has). A missing qemu-img once passed CI on a machine that had it by chance."""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# command-like literals: the first word of an argv list, or shutil.which("x")
COMMAND = re.compile(r'(?:(?<![\w\])"\'])\[\s*|which\(\s*)"([a-zA-Z][a-zA-Z0-9_.+-]{1,30})"')
NOT_COMMANDS = {"rt", "sh", "python3"}  # ours, or in every image
# what the suite runs that the pattern above cannot see (names held in variables, fixtures)
TOOLS = ["runc", "crun", "podman", "conmon", "containerd", "ctr", "containerd-shim-runc-v2", "lxc-start",
         "lxc-attach", "lxc-stop", "qemu-system-x86_64", "qemu-img", "debootstrap", "cc", "musl-gcc", "lz4", "cpio",
         "busybox", "ip", "unshare", "mount", "umount", "script", "mcopy", "mkfs.vfat", "syslinux", "modinfo"]


def sources(*tops):
    for top in tops:
        for d, _, names in os.walk(os.path.join(REPO, top)):
            for n in names:
                if n.endswith((".py", ".sh")) or "." not in n:
                    with open(os.path.join(d, n), errors="replace") as f:
                        yield f.read()


def sh(*argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def installed_by_setup() -> set[str]:
    if not shutil.which("dpkg") or not shutil.which("apt-cache"):
        pytest.skip("a Debian host (dpkg, apt-cache)")
    named = set()
    for text in sources("scripts", ".ci"):
        for m in re.finditer(r"apt-get\s+install((?:\\\n|[^\n])*)", text):
            named.update(t for t in m.group(1).replace("\\\n", " ").split() if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", t))
    out = sh("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
             "--no-breaks", "--no-replaces", "--no-enhances", *sorted(named))
    return named | {line.strip() for line in out.splitlines() if line and not line.startswith(" ")}


def package_of(path: str) -> str | None:
    for p in dict.fromkeys([path, os.path.realpath(path), path.removeprefix("/usr"),
                            os.path.realpath(path).removeprefix("/usr")]):
        for line in sh("dpkg", "-S", p).splitlines():
            if not line.startswith("diversion"):
                return line.split(":")[0].split(",")[0].strip()
    return None


def test_every_command_the_suite_calls_is_installed_by_setup(installed_by_setup):
    commands = set(TOOLS)
    for text in sources("tests", "scripts"):
        commands.update(c for c in COMMAND.findall(text) if shutil.which(c))  # literals that are commands here
    missing, unowned = [], []
    for c in sorted(commands - NOT_COMMANDS):
        path = shutil.which(c)
        if path is None:
            missing.append(c)
            continue
        if not path.startswith(("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")):
            continue  # the venv's, pyenv's or /usr/local's: not from a Debian package
        pkg = package_of(path)
        if pkg is None or pkg in installed_by_setup:
            continue
        prio = sh("dpkg-query", "-W", "-f=${Essential} ${Priority}", pkg).split()
        if "yes" not in prio and not {"required", "important"} & set(prio):
            unowned.append(f"{c} ({pkg})")
    assert not unowned, f"scripts/setup does not install the packages of: {', '.join(unowned)}"
    assert not missing, f"the suite calls commands that are not installed (run scripts/setup): {', '.join(missing)}"
