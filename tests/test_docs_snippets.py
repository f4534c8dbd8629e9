"""Every curl command the README and docs/ give against the quickstart's listener
(`127.0.0.1:10000`, no shell variable, at the start of a line of a shell block) runs
against the suite's quickstart (`gateway`, its port in place of 10000) and exits 0, its
pipe included: a `| grep` that finds nothing fails here. Where the line after it shows
output as `# name: value`, that output is what it prints. And every Python program they
give against it (a block that imports what it uses) runs to its end: an SDK call the
gateway refuses raises."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENER = "127.0.0.1:10000"


def doc_curls() -> list[tuple[str, str, str | None]]:
    """(where, the command, the output the docs show or None)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines, fence, index = path.read_text().splitlines(), None, 0
        while index < len(lines):
            line = lines[index]
            if line.strip().startswith("```"):
                fence = line.strip()[3:].strip() if fence is None else None
            elif fence in ("bash", "sh", "shell", "") and line.startswith("curl ") and LISTENER in "".join(lines[index:index + 6]):
                start, command = index, line
                while command.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    command = command[:-1] + " " + lines[index].strip()
                after = lines[index + 1].strip() if index + 1 < len(lines) else ""
                shown = re.match(r"# ([a-z0-9-]+: \S+)", after)
                if "$" not in command and LISTENER in command:
                    found.append((f"{path.relative_to(ROOT)}:{start + 1}", command, shown and shown.group(1)))
            index += 1
    return found


CURLS = doc_curls()


def test_the_docs_give_curl_commands():
    assert len(CURLS) >= 8, CURLS


@pytest.mark.parametrize("where,command,shown", CURLS, ids=[where for where, _, _ in CURLS])
def test_a_documented_curl_runs_against_the_quickstart(gateway, where, command, shown):
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command.replace(LISTENER, f"127.0.0.1:{gateway.port}")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip(), (where, done.returncode, done.stdout[-500:], done.stderr[-500:])
    if shown:
        assert shown.lower() in done.stdout.lower(), (where, shown, done.stdout[-500:])


def doc_pythons() -> list[tuple[str, str]]:
    """(where, the code) of each Python block of the README and docs/ that calls the
    quickstart's listener and is a whole program (it imports what it uses and writes out
    its values)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            code = match.group(1)
            # (a value left out, `sk-Zk3…`, or a key named from the shell, `api_key=TOKEN`: a fragment)
            if LISTENER in code and code.lstrip().startswith(("import ", "from ")) and "…" not in code \
                    and not re.search(r"api_key=[A-Z_]+\b", code):
                found.append((f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}", code))
    return found


PYTHONS = doc_pythons()


def test_the_docs_give_python_programs():
    assert len(PYTHONS) >= 2, PYTHONS


@pytest.mark.parametrize("where,code", PYTHONS, ids=[where for where, _ in PYTHONS])
def test_a_documented_python_program_runs_against_the_quickstart(gateway, where, code):
    import sys
    done = subprocess.run([sys.executable, "-c", code.replace(LISTENER, f"127.0.0.1:{gateway.port}")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (where, done.stdout[-500:], done.stderr[-1500:])     # an SDK error raises
