"""Subordinate id ranges for unprivileged (user-namespaced) containers, allocated by rt
itself in its root: no hand-editing of /etc/subuid.

Where /etc/subuid and /etc/subgid give root ranges (as for LXC or Incus), the ranges come
from those; otherwise from rt's own pool, less every range those files give to users."""
import os

from .errors import RtError

FIRST, SIZE, COUNT = 1 << 20, 65536, 4096  # ranges from host id 1048576 up, 65536 ids each
OWNERS = ("root", "0")  # the runtime's own entries in /etc/subuid


def read_subids(path: str) -> list[tuple[str, int, int]]:
    """(owner, first id, count) of each valid line of /etc/subuid or /etc/subgid."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
                    out.append((parts[0], int(parts[1]), int(parts[2])))
    except OSError:
        pass
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            if max(s1, s2) < min(e1, e2):
                out.append((max(s1, s2), min(e1, e2)))
    return sorted(out)


def _subtract(pool: list[tuple[int, int]], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    for ts, te in taken:
        pool = [piece for s, e in pool for piece in ((s, min(e, ts)), (max(s, te), e)) if piece[0] < piece[1]]
    return pool


def pool(subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> list[tuple[int, int]]:
    """The [start, end) id intervals rt may hand out as ranges."""
    uids, gids = read_subids(subuid), read_subids(subgid)
    own_u = [(a, a + n) for who, a, n in uids if who in OWNERS]
    own_g = [(a, a + n) for who, a, n in gids if who in OWNERS]
    if own_u and own_g:  # uid and gid maps are one range each: ids free in both
        return _intersect(own_u, own_g)
    users = [(a, a + n) for who, a, n in uids + gids if who not in OWNERS]
    return _subtract([(FIRST, FIRST + SIZE * COUNT)], users)


class IdRanges:
    def __init__(self, root: str, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid"):
        self.path = os.path.join(root, "idranges.json")
        self.subuid, self.subgid = subuid, subgid

    def _locked(self, change):
        from .lockedjson import update
        return update(self.path, change, 0o711)

    def lease(self, cid: str) -> int:
        """The first host id of the range for `cid` (the same one if it has one already)."""
        def change(owners):
            for base, owner in owners.items():
                if owner == cid:
                    return int(base)
            for start, end in pool(self.subuid, self.subgid):
                for base in range(start, end - SIZE + 1, SIZE):
                    if str(base) not in owners:
                        owners[str(base)] = cid
                        return base
            raise RtError(f"no free subordinate id range of {SIZE} ids left (rt's pool, or root's ranges "
                          f"in {self.subuid} and {self.subgid})")
        return self._locked(change)

    def release(self, cid: str) -> None:
        def change(owners):
            for base in [b for b, owner in owners.items() if owner == cid]:
                del owners[base]
        self._locked(change)
