#!/usr/bin/env python3
"""Pack the machine files that the v2 data (tools/memtasks, nldata.py) reads into one tarball, so
that the GPU machine (another distribution, no man pages) trains on the same records and filler.

The tarball is a root-like tree; unpack it anywhere and pass that directory as train.py
--sources-root.  Only what the generators read, trimmed as they read it:
  etc/services, etc/protocols, etc/passwd, var/lib/dpkg/status,
  usr/share/doc/*/changelog.Debian.gz (first 20 KB), usr/share/doc/*/copyright (first 12 KB),
  usr/share/man/man1/*.gz and man8/*.gz (at most 2 pages per name prefix: gcloud_* alone has 16,000).
The files are this machine's (Debian packages installed here); it is data, not code: keep it out of
git (.carry/), and make it again when it is lost.

  python3 tools/train/make_sources.py --out .carry/sources.tar.gz
"""
import argparse
import glob
import gzip
import io
import os
import re
import tarfile

LIMITS = {"changelog.Debian.gz": 20_000, "copyright": 12_000}


def members(root):
    """(path inside the tree, bytes) of every file to pack."""
    for rel in ("etc/services", "etc/protocols", "etc/passwd", "var/lib/dpkg/status"):
        p = os.path.join(root, rel)
        if os.path.exists(p):
            yield rel, open(p, "rb").read()
    for p in sorted(glob.glob(os.path.join(root, "usr/share/doc/*/changelog.Debian.gz"))):
        try:
            with gzip.open(p, "rb") as f:
                data = f.read(LIMITS["changelog.Debian.gz"])
        except (OSError, EOFError):
            continue
        yield os.path.relpath(p, root), gzip.compress(data, mtime=0)
    for p in sorted(glob.glob(os.path.join(root, "usr/share/doc/*/copyright"))):
        if os.path.isfile(p):
            yield os.path.relpath(p, root), open(p, "rb").read(LIMITS["copyright"])
    per = {}
    for sec in ("man1", "man8"):
        for p in sorted(glob.glob(os.path.join(root, "usr/share/man", sec, "*.gz"))):
            prefix = re.split(r"[-_.]", os.path.basename(p))[0]
            per[prefix] = per.get(prefix, 0) + 1
            if per[prefix] <= 2 and os.path.isfile(p):
                yield os.path.relpath(p, root), open(p, "rb").read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default="/")
    args = ap.parse_args()
    n = size = 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with tarfile.open(args.out + ".tmp", "w:gz") as tar:
        for rel, data in members(args.root):
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
            n += 1
            size += len(data)
    os.replace(args.out + ".tmp", args.out)
    print("%s: %d files, %.1f MB packed into %.1f MB" % (args.out, n, size / 1e6, os.path.getsize(args.out) / 1e6))


if __name__ == "__main__":
    main()
