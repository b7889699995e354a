"""What Keras trains on: the memory-mapped blocks through `model.prepare_tf_dataset`, or a stream."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import tensorflow as tf

from mlm_toolkit.masking import BlockMasker, block_order, mask_seed
from mlm_toolkit.streaming import BlockStream


def mask_each(masker: BlockMasker, blocks: np.ndarray, seeds) -> dict[str, np.ndarray]:
    """The blocks masked one by one, each from its own seed: a block's mask depends on its place in the run only."""
    masked = [masker(block[None], np.random.default_rng(seed)) for block, seed in zip(blocks, seeds, strict=True)]
    return {key: np.concatenate([m[key] for m in masked]) for key in masked[0]}


class PlacedMasking:
    """The collate_fn of `prepare_tf_dataset` over the blocks in the run's order: the guide's collator
    (`BlockMasker`: whole words and padded examples too), each block masked from its place in the run, as pt-mlm
    and the stream mask theirs. tf.data calls it once per batch, in order (`to_tf_dataset` maps sequentially), so
    it counts the batches from the step the fit starts at (`step`, set once `prepare_tf_dataset` has looked at
    the output's shape)."""

    def __init__(self, masker: BlockMasker, seed: int, batch_size: int, steps_per_epoch: int) -> None:
        self.masker, self.seed, self.batch_size, self.steps_per_epoch = masker, seed, batch_size, steps_per_epoch
        self.step: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, np.ndarray]:
        blocks = np.stack([np.asarray(e["input_ids"]) for e in examples])
        if self.step is None:  # prepare_tf_dataset's look at what a batch holds
            return mask_each(self.masker, blocks, [0] * len(blocks))
        epoch, batch = divmod(self.step, self.steps_per_epoch)
        self.step += 1
        first = batch * self.batch_size
        return mask_each(self.masker, blocks, [mask_seed(self.seed, epoch, first + i) for i in range(len(blocks))])


def run_order(num_blocks: int, batch_size: int, seed: int, steps_done: int, total_steps: int) -> np.ndarray:
    """The indices of the blocks the steps after `steps_done` read: each epoch's seeded order, whole batches."""
    per_epoch = num_blocks // batch_size
    parts = []
    for epoch in range(steps_done // per_epoch, -(-total_steps // per_epoch)):
        first, last = max(steps_done - epoch * per_epoch, 0), min(total_steps - epoch * per_epoch, per_epoch)
        parts.append(block_order(seed, epoch, num_blocks)[first * batch_size : last * batch_size])
    return np.concatenate(parts)


def run_batches(model, blocks, tokenizer, data_cfg, batch_size: int, seed: int, steps_done: int, total_steps: int):
    """The guide's input pipeline (`model.prepare_tf_dataset`, the guide's collator) over the memory-mapped
    blocks, in the run's order from step `steps_done`: a fit resumed there reads what the uninterrupted one
    reads. Repeated, so its length is never one epoch's: Keras would then restart it at each epoch."""
    masker = BlockMasker(tokenizer, data_cfg.mlm_probability, data_cfg.whole_word_masking, data_cfg.line_by_line)
    masking = PlacedMasking(masker, seed, batch_size, len(blocks) // batch_size)
    # A fit with every step done (its final save had failed) reads nothing, but prepare_tf_dataset needs rows.
    start = min(steps_done, total_steps - 1)
    order = run_order(len(blocks), batch_size, seed, start, total_steps)
    dataset = model.prepare_tf_dataset(
        blocks.select(order), batch_size=batch_size, shuffle=False, collate_fn=masking, drop_remainder=True
    )
    masking.step = start
    return dataset.repeat()


KEPT_POSITIONS = 1024  # batches tf.data may have read ahead of training, and more


def stream_batches(stream: BlockStream, tokenizer, data_cfg, batch_size: int, seed: int, batches_done: int):
    """(masked batches of `stream`, `position_after(n)`: where the stream stood after the run's n-th batch,
    whatever tf.data has read ahead); `batches_done`: those a resumed run trained on."""
    masker = BlockMasker(tokenizer, data_cfg.mlm_probability, data_cfg.whole_word_masking, data_cfg.line_by_line)
    positions: OrderedDict[int, dict] = OrderedDict({batches_done: stream.position.to_dict()})

    def batches():
        count, blocks = batches_done, []
        for block, passes, position in stream:
            rng = np.random.default_rng(mask_seed(seed, passes, position))
            blocks.append(masker(block[None], rng))
            if len(blocks) < batch_size:
                continue
            count += 1
            positions[count] = stream.position.to_dict()
            while len(positions) > KEPT_POSITIONS:
                positions.popitem(last=False)
            yield {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
            blocks = []

    width = data_cfg.block_size
    keys = ["input_ids", "labels"] + (["attention_mask"] if data_cfg.line_by_line else [])
    signature = {key: tf.TensorSpec((batch_size, width), tf.int32) for key in keys}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    options = tf.data.Options()
    # Each worker reads its own shard of the rows (split_dataset_by_node): tf.data must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options), lambda count: positions[count]
