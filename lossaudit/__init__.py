"""lossaudit: is loss-based example selection safe on this dataset, and what does it spend its backprops on?

One import name for the whole tool: `lossaudit.training` produces the logs, `lossaudit.audit` stores
and analyses them, `lossaudit.reports` renders them, and `lossaudit.cli` is the command line. This
module stays light (no torch, no DuckDB), so that importing any part of the package is cheap.
"""

__version__ = "0.2.0"
