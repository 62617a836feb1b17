"""Run rvkvm's pure-Python packages in another interpreter (PyPy) that has
not installed them.

An installed rvkvm may map its subpackages from several folders (an editable
install maps the repository's top-level ``emulator/``, ``server/`` ... under
``rvkvm``), which a second interpreter cannot know. ``python_command`` starts
one with a finder for exactly those folders, so that ``import rvkvm.emulator``
there loads the same files as here. Only the standard library is used, and
the code it sends runs on Python 3.9 (Debian's PyPy).
"""

from __future__ import annotations

import importlib.util
from typing import Dict, List, Sequence

# The subpackages a worker or benchmark in another interpreter may import:
# pure Python, no gRPC.
PURE_PACKAGES = ("rvkvm", "rvkvm.uapi", "rvkvm.emulator", "rvkvm.server", "rvkvm.server.kvm")

_FINDER = '''
import importlib.machinery as _machinery, os as _os, sys as _sys
class _RvkvmFolders:
    folders = {folders!r}
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        folder = cls.folders.get(name)
        if folder is None:
            return None
        return _machinery.PathFinder.find_spec(name, [_os.path.dirname(folder)])
_sys.meta_path.insert(0, _RvkvmFolders)
'''


def package_folders(names: Sequence[str] = PURE_PACKAGES) -> Dict[str, str]:
    """Where this interpreter loads each of ``names`` from (package -> folder)."""
    folders = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"{name} is not an importable package here")
        folders[name] = list(spec.submodule_search_locations)[0]
    return folders


def python_command(python: str, code: str, args: Sequence[str] = (),
                   names: Sequence[str] = PURE_PACKAGES) -> List[str]:
    """``[python, "-c", ...]`` running ``code`` with ``names`` importable as here."""
    return [python, "-c", _FINDER.format(folders=package_folders(names)) + code, *args]
