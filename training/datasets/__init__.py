"""Datasets: a registry of loaders that all return uint8 images N×C×H×W, int labels and stable example ids.

Spec strings are ``NAME`` or ``NAME:PATH`` (``digits``, ``imagefolder:~/data/pets``,
``cifar10:~/data/cifar-10-batches-py``, ``npz:arrays.npz``). `example_id` is the index of an example
in the full training split of its dataset, so it is stable under subsetting and shuffling. A new
loader is a function decorated with `register_dataset` in a module imported below.
"""

from lossaudit.training.datasets import arrays, files  # noqa: F401  (they register their loaders)
from lossaudit.training.datasets.base import (DATASETS, Dataset, Split, parse_spec, read_dataset, register_dataset,
                                              stratified_subset)
from lossaudit.training.datasets.checks import check_dataset
from lossaudit.training.datasets.files import IMAGE_SUFFIXES


def load_dataset(spec: str, *, split_seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load a dataset by spec (base.read_dataset) and check it for contradictions (checks.check_dataset): refused
    where they leave no correct answer, a `warning:` line on stderr and a note in Dataset.notes otherwise."""
    return check_dataset(read_dataset(spec, split_seed=split_seed, test_fraction=test_fraction))


__all__ = ["DATASETS", "Dataset", "IMAGE_SUFFIXES", "Split", "load_dataset", "parse_spec", "read_dataset",
           "register_dataset", "stratified_subset"]
