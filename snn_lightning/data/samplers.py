"""The sampler that splits an evaluation set over DDP ranks so that every sample is scored exactly once."""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler

from snn_lightning.errors import ConfigurationError

__all__ = ["UnpaddedShardSampler"]


class UnpaddedShardSampler(DistributedSampler):
    """Yield the indices ``rank, rank + num_replicas, …`` of the dataset: each sample once over all ranks.

    torch's ``DistributedSampler`` pads every shard to the same length by repeating samples, so
    metrics over the shards count some samples twice (22/144 correct instead of 22/143). Here the
    shards differ in length by at most one sample, which evaluation tolerates: torchmetrics and
    Lightning's ``sync_dist`` sum the samples and counts of every rank, and no collective runs per
    evaluation batch. Training keeps Lightning's padded sampler: its gradient all-reduce needs every
    rank to run the same number of steps. Being a ``DistributedSampler``, this sampler is kept by
    Lightning rather than replaced by its own.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        """
        Args:
            dataset: the evaluation set to split.
            num_replicas: number of ranks the set is split over.
            rank: the rank whose shard this sampler yields.
        """
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        size = len(dataset)
        if 0 < size < num_replicas:
            # A rank with no batch skips the epoch-end hooks whose collectives the other ranks wait in.
            raise ConfigurationError(
                f"an evaluation set of {size} samples cannot give each of the {num_replicas} DDP processes a sample; "
                f"evaluate on at most {size} processes (trainer.devices x trainer.num_nodes) or on a larger set"
            )
        self.total_size = size
        self.num_samples = len(range(rank, size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))
