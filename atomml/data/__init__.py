"""Datasets of labelled structures: reading and writing, caching, splits, reference energies."""

from .dataset import (
    Dataset,
    concatenate,
    group_split,
    load_dataset,
    random_split,
    reference_energies,
)

__all__ = ["Dataset", "concatenate", "group_split", "load_dataset", "random_split", "reference_energies"]
