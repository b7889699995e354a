"""PyTorch data loading where every random choice is a function of (seed, epoch, position), so a run resumed
at batch K sees the batches and masks an uninterrupted run sees, and 2 x 4 accumulated blocks are masked as 8.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, default_collate

from mlm_toolkit.masking import WholeWordMasking, block_order, mask_seed, masking_collator

if TYPE_CHECKING:
    from mlm_toolkit.streaming import BlockStream


class BlockDataset(Dataset):
    """Train blocks from their cache file, each asked for as (block index, mask seed of that block)."""

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
        order = block_order(self.seed, self.epoch, self.num_blocks)
        for batch in range(self.start, len(self) + self.start):
            first = batch * self.batch_size
            positions = range(first, min(first + self.batch_size, self.num_blocks))
            yield [(int(order[p]), mask_seed(self.seed, self.epoch, p)) for p in positions]


def with_masked_positions(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the flat indices of the labelled positions, found on the host (on a GPU, the host would wait for
    them every step); padded examples are cut to the longest of the batch."""
    if "attention_mask" in batch:
        width = int(batch["attention_mask"].sum(1).max())
        batch = {key: value[:, :width] for key, value in batch.items()}
    return {**batch, "masked_positions": (batch["labels"].flatten() != -100).nonzero().squeeze(1)}


class SeededMasking:
    """The guide's `DataCollatorForLanguageModeling` (or whole-word masking), reseeded for each block."""

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
            # Full blocks go without the collator's all-ones mask: the encoder's fastest kernel, and FNet
            # takes none; padded examples with their own.
            masked[-1].pop("attention_mask", None)
            if self.pad_id is not None:
                masked[-1]["attention_mask"] = (example["input_ids"][None] != self.pad_id).long()
        return with_masked_positions({key: torch.cat([m[key] for m in masked]) for key in masked[0]})


class MapSource:
    """Train blocks of a cache file in a seeded order per epoch; Accelerate shards the batches. The sampler runs
    in this process and each block carries its mask seed: batches and masks are the same whatever the workers."""

    streaming = False

    def __init__(self, blocks, masking: SeededMasking, batch_size: int, seed: int, workers: int = 0) -> None:
        if workers:  # the tokenizer ran in parallel before the fork; the workers only mask, single-threaded
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.batches = EpochBatches(len(blocks), batch_size, seed)
        self.loader = DataLoader(
            BlockDataset(blocks),
            batch_sampler=self.batches,
            collate_fn=masking,
            pin_memory=torch.cuda.is_available(),
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )

    def batches_per_epoch(self, processes: int) -> int:
        return math.ceil(len(self.loader) / processes)

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.batches.set_position(epoch, start_batch)

    def state(self) -> None:  # the position is the epoch and batch the checkpoint records
        return None

    def restore(self, state) -> None:
        pass


class StreamedBlocks(IterableDataset):
    """The blocks of a `BlockStream`, each with the mask seed of its place in the stream."""

    def __init__(self, stream: BlockStream, seed: int) -> None:
        self.stream, self.seed = stream, seed

    def __iter__(self):
        for block, passes, position in self.stream:
            yield {
                "input_ids": torch.from_numpy(block.astype(np.int64)),
                "mask_seed": mask_seed(self.seed, passes, position),
            }


class StreamSource:
    """--streaming: this process's shard of the stream, read in this process (no worker reads ahead), its
    batches moved to `device` (what Accelerate does for the loaders it prepares)."""

    streaming = True

    def __init__(self, stream: BlockStream, masking: SeededMasking, batch_size: int, seed: int, device) -> None:
        self.stream, self.device = stream, device
        self.loader = DataLoader(
            StreamedBlocks(stream, seed),
            batch_size=batch_size,
            collate_fn=masking,
            pin_memory=torch.cuda.is_available(),
        )

    def batches_per_epoch(self, processes: int) -> None:
        return None  # not known: trained by --max-steps

    def set_position(self, epoch: int, start_batch: int) -> None:
        pass  # restored from the checkpoint's stream position instead

    def state(self) -> dict:
        return self.stream.position.to_dict()

    def restore(self, state: dict | None) -> None:
        from mlm_toolkit.streaming import StreamPosition

        self.stream.position = StreamPosition.from_dict(state)

    def __iter__(self):
        non_blocking = self.device.type == "cuda"
        for batch in self.loader:
            yield {key: value.to(self.device, non_blocking=non_blocking) for key, value in batch.items()}


def train_source(data, tokenizer, run, options, accelerator) -> MapSource | StreamSource:
    """Where the training batches come from: the memory-mapped blocks, or this process's stream."""
    config = run.data
    masking = SeededMasking(tokenizer, config.mlm_probability, config.whole_word_masking, config.line_by_line)
    batch_size, seed = run.train.per_device_batch_size, run.train.seed
    if not config.streaming:
        return MapSource(data.train_blocks, masking, batch_size, seed, options.loader_workers)
    from mlm_toolkit.streaming import BlockStream

    index, processes = accelerator.process_index, accelerator.num_processes
    stream = BlockStream(lambda: data.open_train(index, processes), tokenizer, config)
    return StreamSource(stream, masking, batch_size, seed, accelerator.device)


class WaitClock:
    """Seconds the training loop spent waiting for its next batch."""

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
