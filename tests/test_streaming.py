"""--streaming: blocks grouped as the rows stream in are map mode's blocks, a stream resumes at the exact
block (across pulls of rows and passes over the stream), processes read disjoint shards, and a streamed
PyTorch run resumed from a checkpoint ends exactly as an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pt_helpers import pt_train_command, run_cli, train_tiny

from mlm_toolkit import streaming
from mlm_toolkit.config import DataConfig
from mlm_toolkit.data import prepare_data
from mlm_toolkit.streaming import BlockStream, prepare_stream


@pytest.fixture()
def tokenizer(tiny_roberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_roberta)


@pytest.fixture()
def corpus(tmp_path):
    """A jsonl of 300 rows and a validation file, so that neither mode holds rows out of train."""
    from tiny_models import tiny_corpus

    texts = tiny_corpus(320)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:300]))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[300:]))
    return tmp_path


def config(corpus, **changes) -> DataConfig:
    fields = dict(dataset=str(corpus / "train.jsonl"), validation_file=str(corpus / "val.jsonl"), block_size=32)
    return DataConfig(**{**fields, **changes})


def take(stream, count: int) -> list:
    blocks = []
    for block, _, _ in stream:
        blocks.append(block.copy())
        if len(blocks) == count:
            return blocks
    return blocks


@pytest.mark.parametrize("line_by_line", [False, True])
def test_a_stream_gives_the_blocks_of_map_mode(corpus, tokenizer, monkeypatch, line_by_line):
    monkeypatch.setattr(streaming, "ROWS_PER_PULL", 7)  # many pulls: the carry crosses their boundaries
    mapped = prepare_data(config(corpus, line_by_line=line_by_line), tokenizer, seed=0)
    streamed = prepare_stream(config(corpus, line_by_line=line_by_line, streaming=True), tokenizer, seed=0)
    stream = BlockStream(lambda: streamed.open_train(0, 1), tokenizer, config(corpus, line_by_line=line_by_line))
    first = np.asarray(take(stream, len(mapped.train_blocks)))
    np.testing.assert_array_equal(first, np.asarray(mapped.train_blocks))
    # The frozen held-out inputs are the same too: the validation file's blocks, masked once.
    for key in mapped.eval_inputs:
        np.testing.assert_array_equal(streamed.eval_inputs[key], mapped.eval_inputs[key])


def test_a_stream_resumes_at_the_exact_block_across_pulls_and_passes(corpus, tokenizer, monkeypatch):
    monkeypatch.setattr(streaming, "ROWS_PER_PULL", 7)
    data = prepare_stream(config(corpus, streaming=True), tokenizer, seed=0)
    whole = BlockStream(lambda: data.open_train(0, 1), tokenizer, config(corpus))
    blocks_per_pass = len(prepare_data(config(corpus), tokenizer, seed=0).train_blocks)
    reference = take(whole, 2 * blocks_per_pass + 5)  # into the third pass
    for stop in (1, 23, blocks_per_pass - 1, blocks_per_pass, blocks_per_pass + 17):
        first = BlockStream(lambda: data.open_train(0, 1), tokenizer, config(corpus))
        take(first, stop)
        saved = json.loads(json.dumps(first.position.to_dict()))  # as a checkpoint stores it
        again = BlockStream(
            lambda: data.open_train(0, 1), tokenizer, config(corpus), streaming.StreamPosition.from_dict(saved)
        )
        rest = take(again, len(reference) - stop)
        np.testing.assert_array_equal(np.asarray(rest), np.asarray(reference[stop:]), err_msg=f"stop {stop}")


def test_each_process_streams_its_own_rows(corpus, tokenizer):
    data = prepare_stream(config(corpus, streaming=True), tokenizer, seed=0)
    shards = [[row["text"] for row in data.open_train(process, 2)] for process in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) + len(shards[1]) == 300


def test_streaming_without_max_steps_names_the_flag(tiny_roberta, corpus, tmp_path):
    result = run_cli(*pt_train_command(tiny_roberta, corpus / "train.jsonl", tmp_path / "out"), "--streaming")
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("Error: --max-steps:")


def test_a_streamed_run_resumed_ends_as_an_uninterrupted_one(tiny_roberta, corpus, tmp_path, monkeypatch):
    """Stopped at step 12 (of the constant-rate run: the schedule does not depend on --max-steps) and resumed
    to 20, the losses, evaluations and weights are those of a run straight to 20; the rows are pulled 7 at a
    time, so the checkpoint lands inside a pull, with tokens carried."""
    import torch
    from pt_helpers import load_state

    monkeypatch.setattr(streaming, "ROWS_PER_PULL", 7)
    common = ["--streaming", "--lr-scheduler", "constant", "--checkpointing-steps", "4", "--eval-steps", "10"]
    common += ["--max-eval-samples", "20"]
    data = corpus / "train.jsonl"
    train_tiny(tiny_roberta, data, tmp_path / "resumed", *common, "--max-steps", "12")
    (tmp_path / "resumed" / "all_results.json").unlink()
    saved = json.loads((tmp_path / "resumed" / "checkpoint-12" / "stream-0.json").read_text())
    assert saved["source_state"] is not None and saved["carry"], "inside a pull, with tokens carried"
    resumed = train_tiny(tiny_roberta, data, tmp_path / "resumed", *common, "--max-steps", "20", "--resume", "auto")
    straight = train_tiny(tiny_roberta, data, tmp_path / "straight", *common, "--max-steps", "20")
    assert resumed["loss_log"]["steps"] == list(range(1, 21))
    assert resumed["loss_log"]["losses"] == straight["loss_log"]["losses"]
    # The stopped run's own end (step 12) was evaluated too; every other evaluation is the same.
    assert [e for e in resumed["loss_log"]["evals"] if e["step"] != 12] == straight["loss_log"]["evals"]
    for key, value in load_state(tmp_path / "straight").items():
        torch.testing.assert_close(load_state(tmp_path / "resumed")[key], value, rtol=0, atol=0)
    assert resumed["data"]["streaming"] and "rows of the stream" in resumed["data"]["held_out"]


def test_a_streamed_datasets_own_validation_split_is_its_held_out_source(tokenizer, tmp_path):
    from tiny_models import tiny_corpus

    texts = tiny_corpus(120)
    for split, part in (("train", texts[:100]), ("validation", texts[100:])):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in part))
    data = prepare_stream(DataConfig(dataset=str(tmp_path), block_size=32, streaming=True), tokenizer, seed=0)
    assert "validation split" in data.held_out_from and data.rows_held_out == 0
    assert len([row for row in data.open_train(0, 1)]) == 100, "training reads all of the train split"
