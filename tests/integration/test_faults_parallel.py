"""Load: many containers at once, round after round, and nothing left behind (issue 13)."""
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.root

PARALLEL, ROUNDS = 30, 4


def test_parallel_runs_all_succeed(runtime, make_bundle, no_leaks):
    """30 `run`s of /bin/true at once: the shim's and the init's reports share a pipe, and a
    fast init once overtook the shim ('expected IdMap, got Ready', about 2 in 150)."""
    bundle = make_bundle(["true"])
    for r in range(ROUNDS):
        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(lambda i: runtime("run", "--bundle", bundle, f"p{r}-{i}", timeout=120),
                                    range(PARALLEL)))
        failed = [(p.returncode, p.stderr.strip()) for p in results if p.returncode != 0]
        assert not failed, f"round {r}: {len(failed)} of {PARALLEL} failed: {failed[:3]}"
        assert not os.path.exists(runtime.root) or os.listdir(runtime.root) == []
