"""lossaudit: is loss-based example selection safe on this dataset, and what does it spend its backprops on?

One import name for the whole tool: `lossaudit.training` produces the logs, `lossaudit.audit` stores
and analyses them, `lossaudit.reports` renders them, and `lossaudit.cli` is the command line. The public
API for recording a training loop of your own is `lossaudit.Recorder` (lossaudit.recorder). This module
stays light (no torch, no DuckDB until `Recorder` is asked for), so that importing any part is cheap.
"""

from lossaudit.version import __version__

__all__ = ["Recorder", "__version__"]


def __getattr__(name: str):
    if name == "Recorder":
        from lossaudit.recorder import Recorder
        return Recorder
    raise AttributeError(f"module 'lossaudit' has no attribute {name!r}")
