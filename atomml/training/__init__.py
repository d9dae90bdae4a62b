"""Training potentials on energies, forces and stress (see :mod:`atomml.training.trainer`)."""

from .config import TrainConfig
from .metrics import errors, evaluate, parity_plot, predict
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "errors", "evaluate", "parity_plot", "predict", "train"]
