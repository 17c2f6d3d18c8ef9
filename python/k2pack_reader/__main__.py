"""`python -m k2pack_reader FOLDER [--verify]`: list a k2pack folder's (or a shard set's) tensors."""

import argparse
import sys

from . import K2PackError, ShardSet, open_pack


def _describe(pack, out) -> None:
    if pack.shard is not None:
        first, end = pack.expert_range
        print(f"# rank {pack.shard['rank']} (tp {pack.shard['tp_rank']} of {pack.shard['tp']}, "
              f"ep {pack.shard['ep_rank']} of {pack.shard['ep']}), experts {first}..<{end}", file=out)
    for t in pack.tensors():
        shape = "[" + ", ".join(map(str, t.shape)) + "]"
        if t.is_stack:
            where = f"stack of {len(t.sources)}: {t.sources[0].name} …"
        else:
            s = t.sources[0] if t.sources else None
            where = s.name if s else ""
            if s is not None and s.slice is not None:
                where += f" [{s.slice.start}, {s.slice.end}) of dim {s.slice.dimension}"
        print(f"{t.name}\t{t.dtype}\t{shape}\t{t.file.rsplit('/', 1)[-1]}\t{where}", file=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m k2pack_reader", description=__doc__)
    p.add_argument("folder")
    p.add_argument("--verify", action="store_true", help="recompute every tensor's xxHash64")
    a = p.parse_args(argv)
    try:
        opened = open_pack(a.folder)
        folders = [opened.rank(r) for r in range(opened.ranks)] if isinstance(opened, ShardSet) else [opened]
        bad = 0
        for pack in folders:
            _describe(pack, sys.stdout)
            if a.verify:
                for error in pack.verify(raise_on_error=False):
                    print(error, file=sys.stderr)
                    bad += 1
            pack.close()
        if a.verify:
            print(f"{'no' if not bad else bad} checksum mismatch{'es' if bad != 1 else ''}", file=sys.stderr)
        return 1 if bad else 0
    except K2PackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
