"""Shared fixtures of the end-to-end tests: they run the real `hsadb` binary.

Environment:
  HSADB              path to the hsadb binary (ctest sets it); default build/hsadb
  HSADB_TEST_MODEL   model directory to test with; default tests/data/tiny
  HSADB_TEST_MODEL2  a second model with other weights; default tests/data/tiny-bypass
  HSADB_TEST_TIMEOUT seconds one command may take (default 150; raise it for sanitizer builds)
HSADB_DB and HSADB_MODEL of the caller are not passed on: every run names --db and --model.
"""
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64  # chunk_size S of every hsadb model (model-spec.md)


def _binary():
    b = os.environ.get("HSADB") or str(REPO / "build" / "hsadb")
    return Path(b)


def _model(var, default):
    return Path(os.environ.get(var) or (REPO / "tests" / "data" / default))


def _is_model(d):
    return (d / "config.json").is_file() and (d / "model.safetensors").is_file()


BINARY = _binary()
MODEL = _model("HSADB_TEST_MODEL", "tiny")
MODEL2 = _model("HSADB_TEST_MODEL2", "tiny-bypass")
TIMEOUT = float(os.environ.get("HSADB_TEST_TIMEOUT") or 150)


def pytest_collection_modifyitems(config, items):
    reason = None
    if not (BINARY.is_file() and os.access(BINARY, os.X_OK)):
        reason = (f"hsadb binary not found at {BINARY}: build the hsadb_cli target "
                  "(cmake --build build) or set HSADB=/path/to/hsadb")
    elif not _is_model(MODEL):
        reason = (f"test model not found at {MODEL} (config.json + model.safetensors): "
                  "set HSADB_TEST_MODEL")
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


def rand_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("HSADB_DB", "HSADB_MODEL")}
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


class Hsadb:
    """Runs the binary against one database directory and one model."""

    def __init__(self, db, model=MODEL):
        self.db = Path(db)
        self.model = Path(model)

    def argv(self, args, db=None, model=None):
        return [str(BINARY), "--db", str(db or self.db), "--model", str(model or self.model),
                *map(str, args)]

    def __call__(self, *args, input=None, expect=0, db=None, model=None, timeout=TIMEOUT,
                 env=None):
        """Run one command; assert its exit status is `expect` (None: any) and that it did
        not die from a signal. Returns the CompletedProcess (stdout/stderr as bytes)."""
        cmd = self.argv(args, db, model)
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                           env=clean_env(env), stdin=None if input is not None else subprocess.DEVNULL)
        ctx = (f"\n$ {' '.join(cmd)}\nexit {p.returncode}\nstdout: {p.stdout[:1500]!r}"
               f"\nstderr: {p.stderr.decode(errors='replace')[-3000:]}")
        assert p.returncode >= 0, "hsadb died from a signal" + ctx
        if expect is not None:
            assert p.returncode == expect, f"expected exit {expect}" + ctx
        if p.returncode != 0:
            # The error contract: one line `hsadb: <command>: <error>: <detail>` on stderr.
            last = p.stderr.decode(errors="replace").strip().splitlines()
            assert last and last[-1].startswith("hsadb: "), "no error line on stderr" + ctx
        return p

    def json(self, *args, **kw):
        p = self(*args, "--json", **kw)
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError(f"--json output does not parse ({e}): {p.stdout[:2000]!r}")

    def stat(self, name, **kw):
        return self.json("stats", name, **kw)

    def read(self, name, *args, **kw):
        return self("read", name, *args, **kw).stdout

    def append(self, name, data, **kw):
        return self.json("append", name, "-", input=data, **kw)

    def popen(self, *args, **kw):
        return subprocess.Popen(self.argv(args), env=clean_env(), **kw)


@pytest.fixture
def h(tmp_path):
    """A fresh database directory."""
    return Hsadb(tmp_path / "db")


def check_stat(st, data):
    """A memory's stats agree with the bytes it returns."""
    n = len(data)
    assert st["n_bytes"] == n, st
    assert st["n_chunks"] == n // CHUNK, st
    assert st["tail_bytes"] == n % CHUNK, st
