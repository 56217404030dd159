"""The cgroup v2 device filter (eBPF), exercised on this host's cgroup2 tree, v2 or hybrid."""
import os
import subprocess
import sys

import pytest

from rt.core import devicefilter
from rt.core.cgroups import Layout

pytestmark = pytest.mark.root

PROBE = """
import os, sys
for path, flags in (("/dev/null", os.O_RDWR), ("/dev/zero", os.O_RDONLY), ("/dev/full", os.O_WRONLY)):
    try:
        os.close(os.open(path, flags))
        print(path, "ok")
    except OSError as e:
        print(path, e.strerror)
try:
    os.mknod("/tmp/rt-bpf-probe-" + str(os.getpid()), 0o600 | 0o060000, os.makedev(7, 0))
    os.unlink("/tmp/rt-bpf-probe-" + str(os.getpid()))
    print("mknod ok")
except OSError as e:
    print("mknod", e.strerror)
"""


def probe_in(cgroup_dir: str) -> list[str]:
    p = subprocess.run(["sh", "-c", f'echo $$ > {cgroup_dir}/cgroup.procs && exec "$0" -c "$1"', sys.executable,
                        PROBE], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


@pytest.fixture
def v2dir():
    unified = Layout.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    d = os.path.join(unified, f"rt-test-bpf-{os.getpid()}")
    os.mkdir(d)
    yield d
    os.rmdir(d)


def test_rules_allow_deny_and_last_match_wins(v2dir):
    devicefilter.attach(v2dir, [
        {"allow": False, "type": "a", "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # /dev/null
        {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "r"},     # /dev/full: read only
        {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},  # mknod any block device
    ])
    assert probe_in(v2dir) == ["/dev/null ok", "/dev/zero Operation not permitted",
                               "/dev/full Operation not permitted", "mknod ok"]


def test_later_deny_overrides_earlier_allow(v2dir):
    devicefilter.attach(v2dir, [
        {"allow": True, "type": "a", "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    ])
    out = probe_in(v2dir)
    assert out[0] == "/dev/null ok" and out[1] == "/dev/zero Operation not permitted"


def test_program_shape():
    code = devicefilter.program([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
    assert len(code) % 8 == 0 and code[-8] == 0x95  # ends with exit
    # an unconditional rule ends the program: nothing after it is reachable
    code = devicefilter.program([{"allow": True, "type": "c", "major": 1, "minor": 3},
                                 {"allow": False, "type": "a"}])
    assert len(code) == 8 * (6 + 2)
