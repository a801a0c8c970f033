"""Metadata on appends through the CLI: `append --meta KEY=VALUE` and `hsadb meta`, with the
real binary and store (bounds refused with nothing appended; kept by a snapshot; gone with
the memory)."""
from conftest import Hsadb


def test_append_meta_round_trip(h, tmp_path):
    h("create", "m")
    h("append", "m", "-", "--meta", "source=chat", "--meta", "session=s-42", "--meta", "tags=",
      input=b"The user is allergic to peanuts.\n")
    h("append", "m", "-", input=b"no metadata here\n")
    assert h("meta", "m", "1").stdout == b"source=chat\nsession=s-42\ntags=\n"
    assert h.json("meta", "m", "1") == {"memory": "m", "append_id": 1,
                                        "metadata": {"source": "chat", "session": "s-42", "tags": ""}}
    assert h("meta", "m", "2").stdout == b""
    assert h.json("meta", "m", "2")["metadata"] == {}
    # a value with '=' keeps everything after the first '='
    h("append", "m", "-", "--meta", "q=a=b", input=b"x")
    assert h("meta", "m", "3").stdout == b"q=a=b\n"
    # the snapshot of one memory keeps it
    h("snapshot", tmp_path / "snap", "--memory", "m")
    h("restore", tmp_path / "snap", tmp_path / "copy")
    assert Hsadb(tmp_path / "copy")("meta", "m", "1").stdout.startswith(b"source=chat\n")
    # deleted with the memory: a new memory of that name has none
    h("delete", "m", "--yes")
    h("create", "m")
    h("append", "m", "-", input=b"again")
    assert h("meta", "m", "1").stdout == b""


def test_append_meta_errors_keep_nothing(h):
    h("create", "m")
    h("append", "m", "-", input=b"kept")
    for meta, code in [("bad key=v", 2), ("k=" + "v" * 1025, 2), ("novalue", 2), ("=v", 2)]:
        p = h("append", "m", "-", "--meta", meta, input=b"lost", expect=code)
        assert b"meta" in p.stderr
    p = h("append", "m", "-", *sum((["--meta", f"k{i}=v"] for i in range(17)), []), input=b"lost",
          expect=2)
    assert b"at most 16" in p.stderr
    assert h("read", "m").stdout == b"kept"
    assert h.stat("m")["n_appends"] == 1
    assert b"has no append 2" in h("meta", "m", "2", expect=3).stderr
    h("meta", "nosuch", "1", expect=3)
    h("meta", "m", "x", expect=2)
