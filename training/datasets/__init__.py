"""Datasets: a registry of loaders that all return uint8 images N×C×H×W, int labels and stable example ids.

Spec strings are ``NAME`` or ``NAME:PATH`` (``digits``, ``imagefolder:~/data/pets``,
``cifar10:~/data/cifar-10-batches-py``, ``npz:arrays.npz``). `example_id` is the index of an example
in the full training split of its dataset, so it is stable under subsetting and shuffling. A new
loader is a function decorated with `register_dataset` in a module imported below.
"""

from lossaudit.training.datasets import arrays, files  # noqa: F401  (they register their loaders)
from lossaudit.training.datasets.base import (DATASETS, Dataset, Split, load_dataset, parse_spec, register_dataset,
                                              stratified_subset)
from lossaudit.training.datasets.files import IMAGE_SUFFIXES

__all__ = ["DATASETS", "Dataset", "IMAGE_SUFFIXES", "Split", "load_dataset", "parse_spec", "register_dataset",
           "stratified_subset"]
