"""lossaudit: is loss-based example selection safe on this dataset, and what does it spend its backprops on?

One import name for the whole tool, in floors (docs/ARCHITECTURE.md): `lossaudit.core` (errors, settings and the
database), `lossaudit.training` produces the logs, `lossaudit.analysis` reads runs, `lossaudit.audit` audits a
dataset's labels, `lossaudit.reports` renders, and this package is the face: `lossaudit.cli`, the Recorder and
the framework callbacks. The public
API for recording a training loop of your own is `lossaudit.Recorder` (lossaudit.recorder); for auditing labels from
arrays of your own, `lossaudit.audit_arrays` and `lossaudit.find_label_issues` (lossaudit.arrays). This module
stays light (no torch, no DuckDB until `Recorder` is asked for), so that importing any part is cheap.
"""

from lossaudit.core.hooks import register_legacy_identity, register_stored_traits
from lossaudit.core.version import __version__

__all__ = ["Recorder", "UserError", "__version__", "audit_arrays", "find_label_issues"]


def __getattr__(name: str):
    if name == "Recorder":
        from lossaudit.recorder import Recorder
        return Recorder
    if name in ("audit_arrays", "find_label_issues"):
        from lossaudit import arrays
        return getattr(arrays, name)
    if name == "UserError":
        from lossaudit.core.errors import UserError
        return UserError
    raise AttributeError(f"module 'lossaudit' has no attribute {name!r}")


def _legacy_identity(values: dict, device_type: str):
    """The training floor's identity of a run stored by lossaudit 0.1, loaded only when such a database is opened."""
    from lossaudit.training.identity import identify_stored
    return identify_stored(values, device_type)


def _stored_traits(values: dict):
    """The traits the method of a stored run's config declares now (training loads only when an old database is
    opened)."""
    from lossaudit.training.identity import stored_traits
    return stored_traits(values)


register_legacy_identity(_legacy_identity)
register_stored_traits(_stored_traits)
