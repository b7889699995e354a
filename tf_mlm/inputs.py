"""What Keras trains on: the memory-mapped blocks through `model.prepare_tf_dataset`, or a stream."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import tensorflow as tf

from mlm_toolkit.masking import BlockMasker, mask_seed, masking_collator
from mlm_toolkit.streaming import BlockStream


def keras_masking(tokenizer, data_cfg, seed: int):
    """The collate_fn of `prepare_tf_dataset`: the guide's collator, or `BlockMasker` for whole words and
    padded examples."""
    if not (data_cfg.whole_word_masking or data_cfg.line_by_line):
        return masking_collator(tokenizer, data_cfg.mlm_probability, return_tensors="np")
    masker = BlockMasker(tokenizer, data_cfg.mlm_probability, data_cfg.whole_word_masking, data_cfg.line_by_line)
    rng = np.random.default_rng(seed)
    return lambda examples: masker(np.stack([np.asarray(e["input_ids"]) for e in examples]), rng)


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
