"""A training DataLoader whose order, augmentation draws and position survive a resume.

The order of each epoch and a seed for each sample's augmentation come from
``(seed, epoch)`` alone, not from the global random state, and the loader reports how
many batches of the epoch it has yielded. Lightning stores that count in its checkpoints
(``state_dict``) and hands it back on resume (``load_state_dict``), so a run resumed
from a mid-epoch checkpoint trains on exactly the batches the interrupted run had left.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Yield ``(index, augmentation_seed)`` pairs in an order fixed by ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before each epoch. ``start`` skips that many draws of
    the next iteration only, and the loader sets it when resuming part way through an epoch.
    """

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_samples)
        augmentation_seeds = rng.integers(0, 2**63 - 1, size=self.num_samples)
        start, self.start = self.start, 0
        for position in range(start, self.num_samples):
            yield int(order[position]), int(augmentation_seeds[position])


class ResumableDataLoader(DataLoader):
    """A DataLoader over an ``EpochShuffleSampler`` that can continue an epoch where a checkpoint left it.

    Lightning treats a loader with ``state_dict`` and ``load_state_dict`` as resumable:
    it saves the state with each checkpoint and loads it before iterating after a resume.
    """

    def __init__(self, dataset: Dataset, sampler: EpochShuffleSampler, **options: Any):
        super().__init__(dataset, sampler=sampler, **options)
        self.batches_done = 0
        self._resume_batches = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator, so the sampler is read at the first batch, after Lightning's set_epoch.
        self.batches_done, self._resume_batches = self._resume_batches, 0
        self.sampler.start = self.batches_done * self.batch_size
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(int(state["epoch"]))
        batches_done = int(state["batches_done"])
        # A checkpoint taken after the epoch's last batch continues with a new epoch.
        self._resume_batches = batches_done if batches_done < len(self) else 0
