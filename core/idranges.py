"""Subordinate id ranges for unprivileged (user-namespaced) containers, allocated by rt
itself in its root: no hand-editing of /etc/subuid."""
import os

from .errors import RtError

FIRST, SIZE, COUNT = 1 << 20, 65536, 4096  # ranges from host id 1048576 up, 65536 ids each


class IdRanges:
    def __init__(self, root: str):
        self.path = os.path.join(root, "idranges.json")

    def _locked(self, change):
        from .lockedjson import update
        return update(self.path, change, 0o711)

    def lease(self, cid: str) -> int:
        """The first host id of the range for `cid` (the same one if it has one already)."""
        def change(owners):
            for base, owner in owners.items():
                if owner == cid:
                    return int(base)
            for i in range(COUNT):
                base = FIRST + i * SIZE
                if str(base) not in owners:
                    owners[str(base)] = cid
                    return base
            raise RtError("no free subordinate id range left")
        return self._locked(change)

    def release(self, cid: str) -> None:
        def change(owners):
            for base in [b for b, owner in owners.items() if owner == cid]:
                del owners[base]
        self._locked(change)
