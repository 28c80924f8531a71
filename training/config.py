"""Typed run configuration: one frozen dataclass, a default, a unit and a valid range on every field.

A run is a `RunConfig`: the experiment's settings, the method (a registry name or preset, as given)
with its resolved parameters (`params`, an instance of the method's own `Params` dataclass), the
corruption and the seed. A grid is a base config crossed with lists of methods, corruptions and seeds;
each cell's method parameters are resolved exactly once, when the grid is expanded, and stored so.

Config files (TOML or YAML) use the field names and the method parameter names as keys; `method`,
`corruption` and `seeds` may be lists there. Command-line flags override the file.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lossaudit.core.settings as settings
from lossaudit.core.errors import UserError, choices
from lossaudit.core.settings import MAX_EPOCHS, setting
from lossaudit.training import methods
from lossaudit.training.budget import BUDGET_UNITS, SCHEDULES

AUGMENTS = ("auto", "crop-flip", "none")
SCORE_PRECISIONS = ("same", "bf16")
SEED_LIMIT = 2 ** 32  # numpy and torch seeds
MAX_LR = 1e6  # far beyond any schedule, and well inside float32 (an lr of 1e300 overflows the optimizer)


def _seed(help: str):
    return setting(0, help, check=lambda v: 0 <= v < SEED_LIMIT, rule=f"in 0..{SEED_LIMIT - 1}")


@dataclass(frozen=True)
class RunConfig:
    dataset: str = setting("digits", "dataset spec: digits, imagefolder:PATH, csv:PATH, cifar10:PATH or npz:PATH")
    model: str = setting("resnet8", "model name: mlp, resnetD (D = 6n+2) or wrn-D-W (D = 6n+4)")
    method: str = setting("sgd", "selection method (a registry name or preset)")
    corruption: str = setting("none", "none or KIND:SHARE, KIND in random_labels, confusable_labels, shuffle_pixels, "
                                      "gaussian")
    confusion: str = setting("", "confusable_labels: a CSV of class pairs true,given[,weight] (class names); empty = "
                                 "the clean proxy's confusions (see training.confusions)")
    seed: int = _seed("seed for initialisation, candidate order, augmentation, selection and corruption")
    epochs: int = setting(20, "passes of the training set as candidates", unit="epochs",
                          check=lambda v: 0 < v <= MAX_EPOCHS, rule=f"in 1..{MAX_EPOCHS:,}")
    batch_size: int = setting(128, "examples back-propagated per optimizer step, B", unit="examples",
                              check=lambda v: v > 0, rule="> 0")
    lr: float = setting(0.1, "initial SGD learning rate", check=lambda v: 0 < v <= MAX_LR, rule=f"in (0, {MAX_LR:,.0f}]")
    momentum: float = setting(0.9, "SGD momentum", check=lambda v: 0 <= v < 1, rule="in [0, 1)")
    nesterov: bool = setting(False, "use Nesterov momentum")
    weight_decay: float = setting(5e-4, "L2 weight decay", check=lambda v: 0 <= v <= 1, rule="in [0, 1]")
    lr_milestones: tuple[float, ...] = setting((0.6, 0.8), "fractions of the epochs at which the lr is multiplied by "
                                                           "lr_gamma", check=lambda v: all(0 < m <= 1 for m in v),
                                               rule="fractions in (0, 1]")
    lr_gamma: float = setting(0.2, "lr multiplier at each milestone (0.2 = drop by 80%)", check=lambda v: 0 < v <= 1,
                              rule="in (0, 1]")
    schedule: str = setting("step", "learning-rate schedule: step (lr × lr_gamma at each of lr_milestones, fractions "
                                    "of the epochs, or of the budget with --budget) or linear (lr falling linearly to "
                                    "0 at the end of the run's epochs, or of its budget)",
                            check=lambda v: v in SCHEDULES, rule=f"one of {', '.join(SCHEDULES)}")
    budget: float = setting(0.0, "stop once the run has spent this share of a full sgd run (--epochs passes "
                                 "back-propagating every training example), counted in --budget-unit; 0 = no budget: "
                                 "--epochs passes of candidates", check=lambda v: 0 <= v <= 100, rule="in [0, 100]")
    budget_unit: str = setting("backprops", "what a budget counts: backprops, or cost (backprops plus --forward-cost "
                                            "× scoring forwards)", check=lambda v: v in BUDGET_UNITS,
                               rule=f"one of {', '.join(BUDGET_UNITS)}")
    forward_cost: float = setting(0.0, "a scoring forward's cost in training steps, per example, on this machine "
                                       "(lossaudit calibrate measures it); needed by --budget-unit cost",
                                  check=lambda v: 0 <= v <= 10, rule="in [0, 10]")
    augment: str = setting("auto", "auto (crop+flip for 32x32 images, none otherwise), crop-flip or none",
                           check=lambda v: v in AUGMENTS, rule=f"one of {', '.join(AUGMENTS)}")
    eval_every: float = setting(0.25, "evaluate on the test split every this many epochs' worth of backprops",
                                unit="epochs", check=lambda v: v > 0, rule="> 0")
    train_size: int = setting(0, "use a stratified subset of this many training examples; 0 = all", unit="examples",
                              check=lambda v: v >= 0, rule=">= 0 (0 = all)")
    test_size: int = setting(0, "use a stratified subset of this many test examples; 0 = all", unit="examples",
                             check=lambda v: v >= 0, rule=">= 0 (0 = all)")
    val_size: int = setting(0, "carve a validation split of this many training examples (stratified, the same for "
                                "every method and seed; labels as given, corrupted where the training data is), not "
                                "trained on, evaluated with the test split: models are selected by it, never by the "
                                "test split; 0 = none", unit="examples", check=lambda v: v >= 0, rule=">= 0 (0 = none)")
    split_seed: int = _seed("seed of the train/test split (for datasets without one) and of the subsets")
    test_fraction: float = setting(0.2, "test share for datasets without a test split; 0 = no test split, no "
                                        "evaluation", check=lambda v: 0 <= v < 1, rule="in [0, 1)")
    image_size: int = setting(0, "resize every image to S×S (bilinear, antialiased); 0 = keep the dataset's size",
                              unit="pixels", check=lambda v: v == 0 or v >= 4, rule="0 (keep) or at least 4")
    canaries: float = setting(0.0, "add this share of corrupted copies of training examples, split over the four "
                                   "canary kinds, as known positives for calibration", check=lambda v: 0 <= v < 0.5,
                              rule="in [0, 0.5)")
    folds: int = setting(0, "cross-fitting: split the training examples into this many folds (stratified by label) "
                            "and train on every fold but --fold, whose examples are predicted out-of-sample after "
                            "each epoch of the later half (the predictions table); 0 = off",
                         check=lambda v: v == 0 or 2 <= v <= 20, rule="0 (off) or 2..20")
    fold: int = setting(0, "cross-fitting: the fold held out (0-based, below --folds)", check=lambda v: v >= 0,
                        rule=">= 0 and below --folds")
    score_precision: str = setting("same", "precision of the no-grad scoring forward: same (as training's forward: "
                                           "float32 on a CPU, bf16 autocast on a GPU) or bf16 (about 1.8x faster "
                                           "on CPUs with bf16 units; scores differ slightly, see "
                                           "benchmarks/selection_cost.py)", check=lambda v: v in SCORE_PRECISIONS,
                                   rule=f"one of {', '.join(SCORE_PRECISIONS)}")
    device: str = setting("auto", "auto (cuda if available), cpu, cuda or cuda:N",
                          check=lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v) is not None,
                          rule="auto, cpu, cuda, cuda:N or mps")
    params: Any = None  # the method's resolved parameters (method.Params); resolved from `method` when not given

    def __post_init__(self):
        """Resolve the method's parameters once: its defaults, the values given, the preset's own values."""
        cls, _ = methods.resolve(self.method)
        given = (dataclasses.asdict(self.params) if isinstance(self.params, cls.Params)
                 else dict(self.params) if isinstance(self.params, dict) else {})
        object.__setattr__(self, "params", methods.resolve_params(self.method, given))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """The config stored in runs.config (extra keys are ignored). Method parameters are read from `params`,
        or, for runs stored by lossaudit 0.1, from the flat keys they had then."""
        core = {k: settings.coerce(FIELDS[k], v) for k, v in values.items() if k in FIELDS and k != "params"}
        flat = {k: v for k, v in values.items() if k in methods.parameters()}
        return cls(**core, params=flat | dict(values.get("params") or {}))


FIELDS = {f.name: f for f in fields(RunConfig) if f.name != "params"}
GRID_KEYS = {"method": "method", "corruption": "corruption", "seeds": "seed", "seed": "seed", "budget": "budget"}


def split_list(value: Any) -> list[str]:
    """`a,b` or ['a', 'b'] → ['a', 'b']."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


@dataclass(frozen=True)
class Grid:
    """A base config, the lists it is crossed with and the method parameters given; `runs()` expands it in a
    stable order (corruption, then seed, then budget, then method)."""

    base: RunConfig
    methods: tuple[str, ...]
    corruptions: tuple[str, ...]
    seeds: tuple[int, ...]
    method_values: dict = dataclasses.field(default_factory=dict)  # parameter values given, for every method that has them
    budgets: tuple[float, ...] = ()  # the budgets crossed (training.budget); empty: the base config's

    def runs(self) -> list[RunConfig]:
        return [dataclasses.replace(self.base, corruption=c, seed=s, budget=b, method=m,
                                    params=methods.resolve_params(m, self.method_values))
                for c, s, b, m in itertools.product(self.corruptions, self.seeds, self.budgets or (self.base.budget,),
                                                    self.methods)]


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"config file {str(path)!r} is not a text file (TOML or YAML)") from None
    if path.suffix == ".toml":
        import tomllib
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserError(f"config file {str(path)!r}: reading YAML needs PyYAML (pip install pyyaml); or use TOML") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    else:
        raise UserError(f"config file {str(path)!r}: unknown format; valid: .toml, .yaml, .yml")
    if not isinstance(values, dict):
        raise UserError(f"config file {str(path)!r} must map keys to values (e.g. `epochs: 10`), not hold a "
                        f"{type(values).__name__}")
    return values


def build_grid(values: dict[str, Any], *, default_methods: tuple[str, ...], extra_keys: tuple[str, ...] = ()) -> Grid:
    """Merge config values (file first, flags over it) into a validated grid.

    Keys are RunConfig fields, method parameter names and `seeds`; `method`, `corruption` and `seeds` may be
    lists. Keys in `extra_keys` are accepted and ignored (the CLI's own options, e.g. db).
    """
    params = methods.parameters()
    valid = set(FIELDS) | set(GRID_KEYS) | set(params) | set(extra_keys)
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)}; valid: {choices(valid - set(extra_keys))}")
    lists = {
        "method": split_list(values.get("method", ",".join(default_methods))),
        "corruption": split_list(values.get("corruption", "none")),
        "seed": [settings.coerce(FIELDS["seed"], s, name="seeds")
                 for s in split_list(values.get("seeds", values.get("seed", 0)))],
        "budget": [settings.coerce(FIELDS["budget"], b, name="budget") for b in split_list(values.get("budget", 0))],
    }
    for key, items in lists.items():
        if not items:
            raise UserError(f"config key {key!r} is empty; give at least one value")
    for name in lists["method"]:
        methods.resolve(name)
    given = {k: v for k, v in values.items() if k in params}
    for key in given:
        if not any(key in {f.name for f in fields(methods.method_class(m).Params)} for m in lists["method"]):
            raise UserError(f"{settings.flag(key)} is a parameter of {', '.join(methods.users_of(key))}; no method of "
                            f"this grid ({', '.join(lists['method'])}) has it")
    base = RunConfig(**{k: settings.coerce(FIELDS[k], v) for k, v in values.items()
                        if k in FIELDS and k not in GRID_KEYS})
    grid = Grid(base, tuple(dict.fromkeys(lists["method"])), tuple(dict.fromkeys(lists["corruption"])),
                tuple(dict.fromkeys(lists["seed"])), given, tuple(dict.fromkeys(lists["budget"])))
    validate(grid)
    return grid


def validate(grid: Grid) -> list[RunConfig]:
    """Check every value of every cell before anything trains, so a grid never dies half-way on a typo; returns
    the cells."""
    from lossaudit.training.corruptions import parse_corruption
    from lossaudit.training.datasets import parse_spec
    from lossaudit.training.models import check_model_name

    c = grid.base
    name, path = parse_spec(c.dataset)
    if path is not None and not path.exists():
        raise UserError(f"dataset {c.dataset!r}: {str(path)!r} does not exist")
    check_model_name(c.model)
    for spec in grid.corruptions:
        parse_corruption(spec)
    cells = grid.runs()  # resolves and checks every method's parameters
    for cell in cells:
        settings.check(cell)
    if c.folds and c.fold >= c.folds:
        raise UserError(f"--fold {c.fold}: there are {c.folds} folds; valid: 0..{c.folds - 1}")
    if c.fold and not c.folds:
        raise UserError(f"--fold {c.fold} needs --folds (cross-fitting is off); valid: --fold 0, or --folds K > --fold")
    if c.val_size and c.canaries:
        raise UserError(f"--val-size {c.val_size} with --canaries {c.canaries:g}: a canary may replace a validation "
                        "example; valid: one of them (--val-size 0 or --canaries 0)")
    if c.budget_unit == "cost" and c.forward_cost <= 0:
        raise UserError("--budget-unit cost needs --forward-cost (a scoring forward's cost in training steps, "
                        "measured by `lossaudit calibrate`); valid: a value in (0, 10], or --budget-unit backprops")
    if c.budget_unit == "cost" and not all(cell.budget for cell in cells):
        raise UserError("--budget-unit cost needs --budget (a share of a full sgd run); valid: --budget in (0, 100]")
    return cells
