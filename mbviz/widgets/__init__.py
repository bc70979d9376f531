"""ipywidgets dashboards: gradient playground, stability explorer, live training monitor,
and :class:`LiveFigure`, the full-width figure they redraw in."""

from .live_figure import LiveFigure
from .monitor import TrainingMonitor
from .playground import GradientPlayground
from .stability import StabilityExplorer

__all__ = ["GradientPlayground", "LiveFigure", "StabilityExplorer", "TrainingMonitor"]
