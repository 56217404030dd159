from rt.core.idranges import FIRST, SIZE, IdRanges


def test_ranges_are_distinct_stable_and_reused(tmp_path):
    r = IdRanges(str(tmp_path))
    a, b = r.lease("a"), r.lease("b")
    assert (a, b) == (FIRST, FIRST + SIZE)
    assert r.lease("a") == a
    r.release("a")
    assert r.lease("c") == a
