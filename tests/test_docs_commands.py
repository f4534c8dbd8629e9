"""Every `extproc ...` command in the README's and docs/'s shell blocks: parsed by the
real command line (an option a doc names that the command does not take fails here),
and the ones without side effects run against the suite's quickstart (`gateway`),
with its state dir and ports in place of the docs', each exiting cleanly.
Commands that change things (up, keys create, cache purge, mcp approve, ...) are only
parsed; synopses with [optional] parts are skipped."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from warm_start import run_extproc

ROOT = Path(__file__).resolve().parent.parent
SHELL_FENCES = ("bash", "sh", "shell", "console", "")
# Subcommands (and actions) that only read: run for real.
READS = {("usage",), ("runs", "list"), ("runs", "show"), ("cache", "stats"), ("keys", "list"), ("check",),
         ("envoy-config",), ("mcp", "pending"), ("token",), ("doctor",)}
# Those that read the store: given the stack's state dir, and the shipped quickstart config
# where they take one (the docs' commands are the quickstart's; the stack uses its store).
STORE = {"usage", "runs", "cache", "keys", "mcp", "token"}
TAKES_CONFIG = STORE - {"token"}
QUICKSTART = ROOT / "config" / "quickstart.yaml"


def doc_commands() -> list[tuple[str, str]]:
    """(where, the command line after `extproc`) for each command in a shell block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines, fence, index = path.read_text().splitlines(), None, 0
        while index < len(lines):
            line = lines[index].strip()
            if line.startswith("```"):
                fence = None if fence is not None else line[3:].strip()
            elif fence in SHELL_FENCES and not line.startswith("#"):
                start = index
                while line.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    line = line[:-1] + " " + lines[index].strip()
                match = re.search(r"(?:^|[\s(]|/)extproc\s+(.*)$", line)
                if match:
                    found.append((f"{path.relative_to(ROOT)}:{start + 1}", _shell_words(match.group(1))))
            index += 1
    return found


def _shell_words(text: str) -> str:
    """The command alone: without a trailing comment, pipe, redirection, `)` or `&`."""
    words = []
    for word in shlex.split(text, comments=True):
        if word in ("|", ">", ">>", "&", "&&", ";") or word.startswith((">", "|")):
            break
        words.append(word.rstrip(")"))
        if word.endswith(")"):
            break
    return shlex.join(words)


COMMANDS = doc_commands()


def test_the_docs_name_commands():
    assert len(COMMANDS) >= 20, COMMANDS


class _Parsed(Exception):
    def __init__(self, parsed: argparse.Namespace) -> None:
        super().__init__()
        self.parsed = parsed


def _parse(argv: list[str]) -> argparse.Namespace:
    """The real command line's parse of argv, without running the command."""
    from extproc import cli
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, args=None, namespace=None):
        raise _Parsed(original(parser, args, namespace))
    argparse.ArgumentParser.parse_args = parse_then_stop
    try:
        cli.main(argv)
    except _Parsed as parsed:
        return parsed.parsed
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError("the command line did not parse")


@pytest.mark.parametrize("where,command", [c for c in COMMANDS if "[" not in c[1]], ids=lambda v: v)
def test_each_documented_command_parses(where, command, capsys):
    try:
        _parse(shlex.split(command))
    except SystemExit as exited:          # argparse's refusal: exit 2 and a usage line
        raise AssertionError(f"{where}: `extproc {command}` does not parse: {capsys.readouterr().err}") from None


def _runnable(command: str, gateway) -> list[str] | None:
    """The command with the stack's config, state dir and ports; None when it is not one
    that only reads, or names a file of the reader's own (my-gateway.yaml)."""
    argv = shlex.split(command)
    words = [w for w in argv if not w.startswith("-")]
    key = tuple(words[:2]) if tuple(words[:2]) in READS else tuple(words[:1])
    if key not in READS or "[" in command:
        return None
    out, skip = [], False
    for index, word in enumerate(argv):
        if skip:
            skip = False
            continue
        value = argv[index + 1] if index + 1 < len(argv) else ""
        if word in ("--config", "--envoy") and argv[0] not in STORE:
            if not (ROOT / value).is_file():
                return None
            out += [word, str(ROOT / value)]
            skip = True
        elif word in ("--config", "--state-dir", "--prometheus", "--url", "--admin"):
            skip = True                     # replaced below
        else:
            out.append(word)
    if argv[0] in STORE:
        out += ["--state-dir", str(gateway.state_dir)]
    if argv[0] in TAKES_CONFIG:
        out += ["--config", str(QUICKSTART)]
    if argv[0] == "doctor":
        out += ["--url", f"http://127.0.0.1:{gateway.port}", "--admin", gateway.admin_url]
    return out


def test_the_documented_commands_that_only_read_run_against_the_quickstart(gateway):
    runs = {}
    for where, command in COMMANDS:
        argv = _runnable(command, gateway)
        if argv is not None:
            runs.setdefault(shlex.join(argv), where)
    assert len(runs) >= 10, runs
    env = {**os.environ, "EXTPROC_DOCTOR_KEY": "sk-demo-alice"}

    def run(command: str) -> tuple[str, subprocess.CompletedProcess]:
        return command, run_extproc([*shlex.split(command)], env=env,
                                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    failed = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for command, done in pool.map(run, runs):
            # `runs show <id>` of a run this stack never saw: one line saying so.
            expected = (0, 1) if command.startswith("runs show") else (0,)
            if done.returncode not in expected or "Traceback" in done.stderr:
                failed.append(f"{runs[command]}: `extproc {command}` exited {done.returncode}: "
                              f"{(done.stderr or done.stdout)[-600:]}")
    assert not failed, "\n".join(failed)
