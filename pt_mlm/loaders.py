"""PyTorch data loading where every random choice is a function of (seed, epoch, position).

The order of blocks in an epoch and the mask of each block never depend on what ran before or on how
blocks are grouped into batches, so a run resumed at batch K sees exactly the batches and masks an
uninterrupted run sees, and 2 x 4 accumulated blocks (or 2 processes x 4) are masked as 8 are.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from mlm_toolkit.masking import WholeWordMasking, masking_collator


def mask_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the mask of the block at `position` of epoch `epoch`'s order."""
    return (seed * 1_000_003 + epoch * 10_000_019 + position) % (2**63)


def micro_batch_seed(seed: int, epoch: int, batch_in_epoch: int, process: int) -> int:
    """The seed of the dropout draws of one micro-batch of one process."""
    return (mask_seed(seed, epoch, batch_in_epoch) * 65_537 + process) % (2**63)


class BlockDataset(Dataset):
    """Train blocks, read from their memory-mapped file (`mlm_toolkit.blocks.Blocks`); an item is asked for
    as (block index, mask seed of that block)."""

    def __init__(self, blocks) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        index, seed = key
        return {"input_ids": torch.from_numpy(self.blocks[index].astype(np.int64)), "mask_seed": seed}


class EpochBatches(Sampler):
    """Batches of a seeded per-epoch permutation, able to start part-way through an epoch."""

    def __init__(self, num_blocks: int, batch_size: int, seed: int) -> None:
        self.num_blocks, self.batch_size, self.seed = num_blocks, batch_size, seed
        self.epoch, self.start = 0, 0
        self.drop_last = False  # read by accelerate when it shards batches across processes

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def __len__(self) -> int:
        return -(-self.num_blocks // self.batch_size) - self.start

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_blocks)
        for batch in range(self.start, len(self) + self.start):
            first = batch * self.batch_size
            positions = range(first, min(first + self.batch_size, self.num_blocks))
            yield [(int(order[p]), mask_seed(self.seed, self.epoch, p)) for p in positions]


def with_masked_positions(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the flat indices of the labelled positions, found here on the host; padded examples are cut to
    the longest of the batch (the padding beyond it carries no label and no attention).

    Found on a GPU (`labels != -100` then indexing) they would make the host wait for the device on
    every step, since the number of masked tokens decides the shape of what follows.
    """
    if "attention_mask" in batch:
        width = int(batch["attention_mask"].sum(1).max())
        batch = {key: value[:, :width] for key, value in batch.items()}
    return {**batch, "masked_positions": (batch["labels"].flatten() != -100).nonzero().squeeze(1)}


class SeededMasking:
    """The guide's `DataCollatorForLanguageModeling` (or whole-word masking), reseeded for each block from
    its mask seed; padded examples (--line-by-line) get their attention mask from the ids before masking."""

    def __init__(self, tokenizer, mlm_probability: float, whole_word: bool = False, padded: bool = False):
        self.collator = masking_collator(tokenizer, mlm_probability)
        self.whole_words = WholeWordMasking(tokenizer, mlm_probability) if whole_word else None
        self.pad_id = tokenizer.pad_token_id if padded else None

    def mask(self, ids: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        if self.whole_words is None:
            self.collator.generator = torch.Generator().manual_seed(seed)
            return self.collator([{"input_ids": ids}])
        inputs, labels = self.whole_words(ids[None].numpy(), np.random.default_rng(seed))
        return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}

    def __call__(self, examples: list[dict[str, object]]) -> dict[str, torch.Tensor]:
        masked = []
        for example in examples:
            masked.append(self.mask(example["input_ids"], int(example["mask_seed"])))
            if self.pad_id is not None:
                masked[-1]["attention_mask"] = (example["input_ids"][None] != self.pad_id).long()
        return with_masked_positions({key: torch.cat([m[key] for m in masked]) for key in masked[0]})


def train_loader(
    blocks,
    tokenizer,
    mlm_probability: float,
    batch_size: int,
    seed: int,
    workers: int = 0,
    whole_word: bool = False,
    padded: bool = False,
):
    """(DataLoader, its EpochBatches) for training; the sampler is kept to set the epoch and start.

    The sampler runs in this process and every block carries its own mask seed, so the batches and
    masks are the same whatever the number of workers.
    """
    if workers:
        # The tokenizer was used (in parallel) before the fork; its workers only mask, single-threaded.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    batches = EpochBatches(len(blocks), batch_size, seed)
    loader = DataLoader(
        BlockDataset(blocks),
        batch_sampler=batches,
        collate_fn=SeededMasking(tokenizer, mlm_probability, whole_word, padded),
        pin_memory=torch.cuda.is_available(),
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    return loader, batches


class WaitClock:
    """Seconds the training loop spent waiting for its next batch: how much the data loading starves it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def iterate(self, loader):
        batches = iter(loader)
        while True:
            tic = time.perf_counter()
            batch = next(batches, None)
            self.seconds += time.perf_counter() - tic
            if batch is None:
                return
            yield batch


def eval_loader(eval_inputs: dict[str, np.ndarray], batch_size: int) -> DataLoader:
    """The frozen, already-masked evaluation blocks, in order."""
    tensors = {k: torch.from_numpy(v.astype(np.int64)) for k, v in eval_inputs.items()}
    rows = [{k: t[i] for k, t in tensors.items()} for i in range(len(tensors["input_ids"]))]
    return DataLoader(
        rows,
        batch_size=batch_size,
        shuffle=False,
        pin_memory=torch.cuda.is_available(),
        collate_fn=lambda items: with_masked_positions(default_collate(items)),
    )
