"""Plain SGD: every candidate is trained; observations come from the training forward."""

from lossaudit.training.methods.base import Method


class SGD(Method):
    name = "sgd"
    description = "uniform SGD: every example of every epoch is back-propagated (the baseline)"
    is_baseline = True
