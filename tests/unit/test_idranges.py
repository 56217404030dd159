from rt.core.idranges import FIRST, SIZE, IdRanges, pool


def test_ranges_are_distinct_stable_and_reused(tmp_path):
    r = IdRanges(str(tmp_path), subuid=str(tmp_path / "none"), subgid=str(tmp_path / "none"))
    a, b = r.lease("a"), r.lease("b")
    assert (a, b) == (FIRST, FIRST + SIZE)
    assert r.lease("a") == a
    r.release("a")
    assert r.lease("c") == a


def test_root_s_ranges_in_etc_subuid_are_the_pool(tmp_path):
    (tmp_path / "subuid").write_text("root:200000:131072\nalice:100000:65536\n")
    (tmp_path / "subgid").write_text("root:200000:70000\nalice:100000:65536\n")
    r = IdRanges(str(tmp_path), subuid=str(tmp_path / "subuid"), subgid=str(tmp_path / "subgid"))
    assert r.lease("a") == 200000  # root's, and only what both files give: one range fits
    import pytest
    from rt.core.errors import RtError
    with pytest.raises(RtError, match="no free subordinate id range"):
        r.lease("b")


def test_users_ranges_are_never_handed_out(tmp_path):
    first_user = (FIRST, 2 * SIZE + 5)  # overlaps rt's first three ranges
    (tmp_path / "subuid").write_text(f"alice:{first_user[0]}:{first_user[1]}\nbad line\n")
    (tmp_path / "subgid").write_text(f"bob:{FIRST + 5 * SIZE}:10\n")
    p = pool(str(tmp_path / "subuid"), str(tmp_path / "subgid"))
    r = IdRanges(str(tmp_path), subuid=str(tmp_path / "subuid"), subgid=str(tmp_path / "subgid"))
    got = [r.lease(str(i)) for i in range(4)]
    for base in got:
        for s, e in ((FIRST, FIRST + 2 * SIZE + 5), (FIRST + 5 * SIZE, FIRST + 5 * SIZE + 10)):
            assert base + SIZE <= s or base >= e, (base, p)
    assert got[0] == FIRST + 2 * SIZE + 5

