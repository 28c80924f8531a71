"""Typed run configuration: one frozen dataclass, a default and a unit on every field, unknown keys rejected.

A grid is a base `RunConfig` plus lists of methods, corruptions and seeds. Config files (TOML or
YAML) use the field names as keys; `method`, `corruption` and `seeds` may be lists there. Command
line flags override the file. The resolved config of every run is stored in `runs.config`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lossaudit.errors import UserError, choices


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    dataset: str = _f("digits", "dataset spec: digits, imagefolder:PATH, csv:PATH, cifar10:PATH or npz:PATH")
    model: str = _f("resnet8", "model name: mlp, resnetD (D = 6n+2) or wrn-D-W (D = 6n+4)")
    method: str = _f("sgd", "selection method (a registry name or preset)")
    corruption: str = _f("none", "none or KIND:SHARE, KIND in random_labels, shuffle_pixels, gaussian")
    seed: int = _f(0, "seed for initialisation, candidate order, augmentation, selection and corruption")
    epochs: int = _f(20, "passes of the training set as candidates [epochs]")
    batch_size: int = _f(128, "examples back-propagated per optimizer step, B [examples]")
    lr: float = _f(0.1, "initial SGD learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "use Nesterov momentum")
    weight_decay: float = _f(5e-4, "L2 weight decay")
    lr_milestones: tuple[float, ...] = _f((0.6, 0.8), "fractions of the epochs at which the lr is multiplied by lr_gamma")
    lr_gamma: float = _f(0.2, "lr multiplier at each milestone (0.2 = drop by 80%)")
    augment: str = _f("auto", "auto (crop+flip for 32x32 images, none otherwise), crop-flip or none")
    eval_every: float = _f(0.25, "evaluate on the test split every this many epochs' worth of backprops [epochs]")
    train_size: int = _f(0, "use a stratified subset of this many training examples; 0 = all [examples]")
    test_size: int = _f(0, "use a stratified subset of this many test examples; 0 = all [examples]")
    split_seed: int = _f(0, "seed of the train/test split (for datasets without one) and of the subsets")
    test_fraction: float = _f(0.2, "test share for datasets without a test split; 0 = no test split, no evaluation")
    image_size: int = _f(0, "resize every image to S×S (bilinear, antialiased); 0 = keep the dataset's size [pixels]")
    canaries: float = _f(0.0, "add this share of corrupted copies of training examples, split over the three "
                              "corruption kinds, as known positives for calibration")
    device: str = _f("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    # selection-method parameters (each method reads the ones it uses; presets such as sb33 fix theirs)
    beta: float = _f(1.0, "sb/sbe: pick probability = percentile ** beta (1 ≈ 50% selected, 2 ≈ 33%)")
    floor: float = _f(0.0, "sb/sbe: lowest pick probability")
    history_size: int = _f(1024, "sb/sbe: losses (or entropies) kept in the FIFO history [scores]")
    warmup_epochs: int = _f(1, "sb/sbe/uniform: first epochs that train on every example, history untouched [epochs]")
    staleness: int = _f(1, "sb/sbe: re-score an example only when its cached score is this many epochs old; 1 = always [epochs]")
    selectivity: float = _f(0.5, "uniform/rho: share of candidates back-propagated")
    uniform_scoring: bool = _f(True, "uniform: score candidates (logs every example; costs forwards the control does not need)")
    max_selectivity: float = _f(0.5, "vr: pool = B × round(1/max_selectivity, 1) candidates (0.5 → 2B, 0.33 → 3B)")
    tau_th: float = _f(0.0, "vr: variance-reduction switch threshold; 0 = (pool + 3B) / 3B")
    reweight: bool = _f(False, "vr: weight each pick's loss by 1/(pool · P) (unbiased importance sampling)")
    holdout_fraction: float = _f(0.5, "rho: share of the training set held out to train the irreducible-loss model")
    il_model: str = _f("", "rho: model of the irreducible-loss run; empty = same as --model")
    il_epochs: int = _f(0, "rho: epochs of the irreducible-loss run; 0 = same as --epochs [epochs]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """The config stored in runs.config (extra keys such as method_params are ignored)."""
        return cls(**{k: _coerce(k, v) for k, v in values.items() if k in FIELDS})


AUGMENTS = ("auto", "crop-flip", "none")
FIELDS = {f.name: f for f in fields(RunConfig)}
GRID_KEYS = {"method": "method", "corruption": "corruption", "seeds": "seed", "seed": "seed"}


def _coerce(name: str, value: Any) -> Any:
    """Convert a value from a file or flag to the field's type; one clear line when impossible."""
    default = FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(float(v) for v in items if str(v).strip() != "")
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"config key {name!r}: {value!r} is not a valid {type(default).__name__}") from None


def split_list(value: Any) -> list[str]:
    """`a,b` or ['a', 'b'] → ['a', 'b']."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


@dataclass(frozen=True)
class Grid:
    """A base config and the lists it is crossed with; `runs()` expands it in a stable order."""

    base: RunConfig
    methods: tuple[str, ...]
    corruptions: tuple[str, ...]
    seeds: tuple[int, ...]

    def runs(self) -> list[RunConfig]:
        """Every cell, with the parameters of method presets (e.g. sb33 → beta 2) filled in."""
        from lossaudit.training.methods import apply_preset
        return [apply_preset(dataclasses.replace(self.base, corruption=c, seed=s, method=m))
                for c, s, m in itertools.product(self.corruptions, self.seeds, self.methods)]


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserError(f"config file {str(path)!r}: reading YAML needs PyYAML (pip install pyyaml); or use TOML") from None
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    raise UserError(f"config file {str(path)!r}: unknown format; valid: .toml, .yaml, .yml")


def build_grid(values: dict[str, Any], *, default_methods: tuple[str, ...], extra_keys: tuple[str, ...] = ()) -> Grid:
    """Merge config values (file first, flags over it) into a validated grid.

    Keys are RunConfig fields plus `seeds`; `method`, `corruption` and `seeds` may be lists. Keys in
    `extra_keys` are accepted and ignored (the CLI's own options, e.g. db).
    """
    valid = set(FIELDS) | set(GRID_KEYS) | set(extra_keys)
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)}; valid: {choices(valid - set(extra_keys))}")
    lists = {
        "method": split_list(values.get("method", ",".join(default_methods))),
        "corruption": split_list(values.get("corruption", "none")),
        "seed": [_coerce("seed", s) for s in split_list(values.get("seeds", values.get("seed", 0)))],
    }
    for key, items in lists.items():
        if not items:
            raise UserError(f"config key {key!r} is empty; give at least one value")
    base = RunConfig(**{k: _coerce(k, v) for k, v in values.items() if k in FIELDS and k not in GRID_KEYS})
    grid = Grid(base, tuple(dict.fromkeys(lists["method"])), tuple(dict.fromkeys(lists["corruption"])),
                tuple(dict.fromkeys(lists["seed"])))
    validate(grid)
    return grid


def validate(grid: Grid) -> None:
    """Check every value before anything trains, so a grid never dies half-way on a typo."""
    from lossaudit.training.corruptions import parse_corruption
    from lossaudit.training.datasets import parse_spec
    from lossaudit.training.methods import check_method
    from lossaudit.training.models import check_model_name

    c = grid.base
    name, path = parse_spec(c.dataset)
    if path is not None and not path.exists():
        raise UserError(f"dataset {c.dataset!r}: {str(path)!r} does not exist")
    check_model_name(c.model)
    for m in grid.methods:
        check_method(m)
    for spec in grid.corruptions:
        parse_corruption(spec)
    positive = {"epochs": c.epochs, "batch_size": c.batch_size, "lr": c.lr, "eval_every": c.eval_every}
    for key, value in positive.items():
        if not value > 0:
            raise UserError(f"--{key.replace('_', '-')} must be > 0, got {value}")
    for key in ("train_size", "test_size"):
        if getattr(c, key) < 0:
            raise UserError(f"--{key.replace('_', '-')} must be >= 0 (0 = all), got {getattr(c, key)}")
    if not 0 <= c.test_fraction < 1:
        raise UserError(f"--test-fraction must lie in [0, 1), got {c.test_fraction}")
    if c.image_size < 0 or 0 < c.image_size < 4:
        raise UserError(f"--image-size must be 0 (keep) or at least 4, got {c.image_size}")
    if not 0 <= c.canaries < 0.5:
        raise UserError(f"--canaries must lie in [0, 0.5), got {c.canaries}")
    if not 0 <= c.momentum < 1 or c.weight_decay < 0 or not 0 < c.lr_gamma <= 1:
        raise UserError("need 0 <= momentum < 1, weight_decay >= 0 and 0 < lr_gamma <= 1")
    if any(not 0 < m <= 1 for m in c.lr_milestones):
        raise UserError(f"--lr-milestones are fractions of the epochs in (0, 1], got {list(c.lr_milestones)}")
    if c.augment not in AUGMENTS:
        raise UserError(f"unknown augment {c.augment!r}; valid: {', '.join(AUGMENTS)}")
    _validate_method_params(c)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", c.device):
        raise UserError(f"unknown device {c.device!r}; valid: auto, cpu, cuda, cuda:N, mps")


def _validate_method_params(c: RunConfig) -> None:
    from lossaudit.training.models import check_model_name
    checks = [
        ("beta", c.beta > 0, "> 0"), ("floor", 0 <= c.floor <= 1, "in [0, 1]"),
        ("history_size", c.history_size >= 1, ">= 1"), ("warmup_epochs", c.warmup_epochs >= 0, ">= 0"),
        ("staleness", c.staleness >= 1, ">= 1 (1 = always re-score)"),
        ("selectivity", 0 < c.selectivity <= 1, "in (0, 1]"),
        ("max_selectivity", 0 < c.max_selectivity < 1, "in (0, 1)"), ("tau_th", c.tau_th >= 0, ">= 0 (0 = default rule)"),
        ("holdout_fraction", 0 < c.holdout_fraction < 1, "in (0, 1)"), ("il_epochs", c.il_epochs >= 0, ">= 0"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise UserError(f"--{key.replace('_', '-')} must be {rule}, got {getattr(c, key)}")
    if c.il_model:
        check_model_name(c.il_model)
