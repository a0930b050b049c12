"""slangc: the Slang compiler shipped inside the slangtorch wheel, found without importing it.

``slangtorch/bin/slangc`` is found with ``importlib.util.find_spec`` (importing slangtorch
would import torch's C++ extension machinery); it loads its sibling ``libslang*.so`` itself.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

__all__ = ["find_slangc", "slangtorch_version", "slangc_version"]


def find_slangc() -> Path | None:
    """slangc inside the installed slangtorch wheel, found without importing slangtorch."""
    spec = importlib.util.find_spec("slangtorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "bin" / "slangc"
        if path.is_file():
            return path
    return None


def slangtorch_version() -> str:
    """The installed slangtorch's version, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slangtorch")
    except PackageNotFoundError:
        return "unknown"


def slangc_version(slangc: Path | None) -> str:
    """What ``slangc -v`` prints, "not found" for None, "unknown" when it prints nothing."""
    if slangc is None:
        return "not found"
    result = subprocess.run([str(slangc), "-v"], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() or "unknown"
