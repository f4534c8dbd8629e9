"""Compiles the modules extproc/compiled.py names with mypyc; the rest of the
package (and its metadata) is pyproject.toml's. Compiling needs a C compiler: when
it is missing or fails, or with EXTPROC_PURE_PYTHON=1, the package installs as
plain Python, which behaves the same, slower."""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

MODULES = runpy.run_path(os.path.join("extproc", "transport", "compiled.py"))["MODULES"]


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as error:          # no compiler, no headers: plain Python it is
            for extension in self.extensions:     # a module without its shared library fails to import
                path = self.get_ext_fullpath(extension.name)
                if os.path.exists(path):
                    os.remove(path)
            print(f"extproc: compiling {', '.join(MODULES)} failed ({error}); "
                  "installing them as plain Python", file=sys.stderr)


def compiled_modules() -> list:
    if os.environ.get("EXTPROC_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:                     # a build without its build requirements (--no-build-isolation)
        print("extproc: mypyc is not installed; installing the transport as plain Python", file=sys.stderr)
        return []
    paths = [name.replace(".", "/") + ".py" for name in MODULES]
    return mypycify(paths, opt_level="3", group_name="extproc_compiled")


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": OptionalBuildExt})
