"""The workers' transport runs compiled (setup.py, extproc/transport/compiled.py): the suite then
tests what ships. EXTPROC_PURE_PYTHON=1 at install time is the one way to opt out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extproc.transport import compiled

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(bool(os.environ.get("EXTPROC_PURE_PYTHON")), reason="installed as plain Python on purpose")
def test_the_transport_runs_compiled():
    assert compiled.compiled() == {name: True for name in compiled.MODULES}


def test_a_source_newer_than_its_compiled_module_is_stale(tmp_path):
    # A copy of the package whose http2 source is touched after its compiled module.
    package = tmp_path / "extproc"
    shutil.copytree(ROOT / "extproc", package, ignore=shutil.ignore_patterns("__pycache__"))
    for shared in ROOT.glob("extproc_compiled__mypyc*.so"):
        shutil.copy(shared, tmp_path)
    if not any((package / "transport").glob("http2.*.so")):
        pytest.skip("this install runs plain Python: nothing compiled to go stale")
    os.utime(package / "transport" / "http2.py")
    check = textwrap.dedent("""
        import sys, sysconfig
        from extproc.transport import compiled
        print(compiled.stale())
        # The same files as an installed wheel's (extracted in any order): not looked at.
        sysconfig.get_path = lambda kind: sys.argv[1]
        print(compiled.stale())
    """)
    result = subprocess.run([sys.executable, "-c", check, str(tmp_path)], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=True)
    assert result.stdout.split("\n")[:2] == ["['extproc.transport.http2']", "[]"]
