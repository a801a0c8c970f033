"""docs/cli.md documents what the binary does: every command, every exit code."""
import re

from conftest import REPO, Hsadb


def test_cli_reference_matches_help(tmp_path):
    doc = (REPO / "docs" / "cli.md").read_text()
    out = Hsadb(tmp_path / "db")("--help").stdout.decode()
    commands = re.findall(r"^  ([a-z]+) ", out.split("Commands:")[1].split("Global options")[0], re.M)
    assert len(commands) >= 10, out
    for cmd in commands:
        assert re.search(rf"^### {cmd}\b", doc, re.M), f"docs/cli.md has no section for {cmd}"
    help_codes = dict(re.findall(r"^  (\d+)\s+(.+)$", out.split("Exit status:")[1], re.M))
    doc_codes = dict(re.findall(r"^\| (\d+) \| (.+) \|$", doc, re.M))
    assert sorted(help_codes, key=int) == sorted(doc_codes, key=int), (help_codes, doc_codes)
    for opt in re.findall(r"^\s+(--[a-z-]+)", out, re.M):
        assert f"`{opt}" in doc, f"docs/cli.md does not mention {opt}"


def test_man_page_matches_help(tmp_path):
    """man/hsadb.1 names every command, every option and every exit code of --help."""
    page = (REPO / "man" / "hsadb.1").read_text().replace("\\-", "-")
    page = re.sub(r"\\f[BIRP]", "", page)
    out = Hsadb(tmp_path / "db")("--help").stdout.decode()
    commands = re.findall(r"^  ([a-z]+) ", out.split("Commands:")[1].split("Global options")[0], re.M)
    for cmd in commands:
        assert re.search(rf"^\.(B|BI|BR) \"?{cmd}\b", page, re.M), f"hsadb.1 has no entry for {cmd}"
    for opt in re.findall(r"^\s+(--[a-z-]+)", out, re.M):
        assert opt in page, f"hsadb.1 does not mention {opt}"
    for code in re.findall(r"^  (\d+)\s", out.split("Exit status:")[1], re.M):
        assert re.search(rf"^\.B {code}$", page, re.M), f"hsadb.1 lacks exit status {code}"
