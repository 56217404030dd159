"""The trio terminal relay of `rt run`, on a real pty and a real child process (no root)."""
import os
import signal
import subprocess
import sys

import trio

from rt.core.relay import relay_async

CHILD = "import sys; line = sys.stdin.readline(); print('got:' + line.strip(), flush=True); sys.exit(6)"


def spawn_on_pty():
    master, slave = os.openpty()
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    return master, p


async def test_relay_copies_both_ways_and_returns_exit_code():
    master, p = spawn_on_pty()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"hello\n")
    code = await relay_async(master, p.pid, stdin=in_r, stdout=out_w)
    os.close(out_w)
    out = b""
    while chunk := os.read(out_r, 4096):
        out += chunk
    assert code == 6
    assert b"got:hello" in out
    for fd in (in_r, in_w, out_r, master):
        os.close(fd)


async def test_relay_forwards_signals_to_the_process():
    master, slave = os.openpty()
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    async with trio.open_nursery() as nursery:
        result = []

        async def run():
            result.append(await relay_async(master, p.pid, stdin=in_r, stdout=out_w))
        nursery.start_soon(run)
        await trio.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to us, forwarded to the child
    assert result == [128 + signal.SIGTERM]
    for fd in (in_r, in_w, out_r, out_w, master):
        os.close(fd)
