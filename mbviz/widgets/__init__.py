"""ipywidgets dashboards: gradient playground, stability explorer, live training monitor."""

from .monitor import TrainingMonitor
from .playground import GradientPlayground
from .stability import StabilityExplorer

__all__ = ["GradientPlayground", "StabilityExplorer", "TrainingMonitor"]
