#!/usr/bin/python3
"""What each dependency set of scripts/install-deps.sh costs on a fresh Debian machine.

    /usr/bin/python3 scripts/deps_footprint.py [SET ...]     (default: runtime build test training)

A fresh machine is modelled as this machine's packages of priority `required` or `Essential`,
plus apt, closed under their dependencies (about 90 packages, as in a minimal bookworm image).
For each set, `apt-get install --simulate --no-install-recommends` runs against that package
state (-o Dir::State::status=...), and the Installed-Size and download Size of every package it
would install are summed from `apt-cache show`. Installs nothing; needs apt's package lists
(apt-get update) but not root.
"""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def fresh_status():
    """The dpkg status file of a minimal machine, cut from this machine's."""
    paras = [p for p in Path("/var/lib/dpkg/status").read_text().strip().split("\n\n")
             if "Status: install ok installed" in p]
    by = {re.search(r"^Package: (\S+)", p, re.M).group(1): p for p in paras}
    provides = {}
    for name, p in by.items():
        m = re.search(r"^Provides: (.*)$", p, re.M)
        for x in (m.group(1).split(",") if m else []):
            provides.setdefault(x.strip().split()[0], name)

    def deps(p):
        for field in ("Depends", "Pre-Depends"):
            m = re.search(rf"^{field}: (.*)$", p, re.M)
            for alt in (m.group(1).split(",") if m else []):
                for a in alt.split("|"):
                    n = a.strip().split()[0].split(":")[0]
                    if n in by or n in provides:
                        yield n if n in by else provides[n]
                        break

    todo = [n for n, p in by.items()
            if re.search(r"^(Essential: yes|Priority: required)$", p, re.M)] + ["apt"]
    keep = set()
    while todo:
        n = todo.pop()
        if n in by and n not in keep:
            keep.add(n)
            todo.extend(deps(by[n]))
    return "\n\n".join(by[n] for n in sorted(keep)) + "\n", len(keep)


def sizes(pkgs):
    """{package: (installed KiB, download bytes)} of the candidate versions."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *pkgs],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for para in out.strip().split("\n\n"):
        name = re.search(r"^Package: (\S+)", para, re.M).group(1)
        inst = re.search(r"^Installed-Size: (\d+)", para, re.M)
        size = re.search(r"^Size: (\d+)", para, re.M)
        res[name] = (int(inst.group(1)) if inst else 0, int(size.group(1)) if size else 0)
    return res


def main():
    sets = sys.argv[1:] or ["runtime", "build", "test", "training"]
    status, n_base = fresh_status()
    with tempfile.TemporaryDirectory() as d:
        st = Path(d) / "status"
        st.write_text(status)
        print(f"fresh machine: {n_base} packages (required/essential + apt, with dependencies)")
        print(f"{'set':<24} {'packages':>8} {'installed MB':>13} {'download MB':>12}")
        for s in sets:
            names = s.split("+")
            pkgs = subprocess.run([str(REPO / "scripts/install-deps.sh"), *names, "--list"],
                                  capture_output=True, text=True, check=True).stdout.split()
            sim = subprocess.run(["apt-get", "-s", "-o", f"Dir::State::status={st}", "install",
                                  "--no-install-recommends", *pkgs],
                                 capture_output=True, text=True)
            if sim.returncode:
                sys.exit(f"apt-get -s failed for {s}:\n{sim.stdout}{sim.stderr}")
            inst = re.findall(r"^Inst (\S+)", sim.stdout, re.M)
            sz = sizes([p.split(":")[0] for p in inst])
            kib = sum(v[0] for v in sz.values())
            dl = sum(v[1] for v in sz.values())
            print(f"{s:<24} {len(inst):>8} {kib / 1024:>13.0f} {dl / 1e6:>12.0f}")


if __name__ == "__main__":
    main()
