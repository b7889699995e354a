"""One job of benchmarks/data.py, in this process: `python -m benchmarks.data_worker JOB_JSON`.

Prints `RESULT {"seconds", "blocks", "tokens_per_s"}`; the parent samples this process tree's memory.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

BLOCK_SIZE = 128
STREAMED_BLOCKS = 20_000


def tokenizer():
    from transformers import AutoTokenizer

    from mlm_toolkit.config import BUILTIN_MODEL
    from mlm_toolkit.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(BUILTIN_MODEL).location)


def ours(job: dict) -> int:
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.data import prepare_data

    workers = job["workers"] if job["workers"] > 1 else None
    config = DataConfig(dataset=job["corpus"], max_samples=None, preprocessing_num_workers=workers)
    data = prepare_data(config, tokenizer(), seed=42)
    return len(data.train_blocks) + data.eval_blocks_available


def guide(job: dict) -> int:
    """The Hugging Face guide's preprocessing, verbatim but for the local file and num_proc."""
    from datasets import load_dataset

    tok, num_proc = tokenizer(), job["workers"] if job["workers"] > 1 else None
    eli5 = load_dataset("json", data_files=job["corpus"], split="train")
    eli5 = eli5.train_test_split(test_size=0.2, seed=42)
    eli5 = eli5.flatten()

    def preprocess_function(examples):
        return tok([" ".join(x) for x in examples["answers.text"]])

    tokenized_eli5 = eli5.map(
        preprocess_function, batched=True, num_proc=num_proc, remove_columns=eli5["train"].column_names
    )

    def group_texts(examples):
        concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        if total_length >= BLOCK_SIZE:
            total_length = (total_length // BLOCK_SIZE) * BLOCK_SIZE
        return {
            k: [t[i : i + BLOCK_SIZE] for i in range(0, total_length, BLOCK_SIZE)]
            for k, t in concatenated_examples.items()
        }

    lm_dataset = tokenized_eli5.map(group_texts, batched=True, num_proc=num_proc)
    return len(lm_dataset["train"]) + len(lm_dataset["test"])


def stream(job: dict) -> int:
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.streaming import BlockStream, prepare_stream

    tok = tokenizer()
    config = DataConfig(dataset=job["corpus"], max_samples=None, max_eval_samples=1000, streaming=True)
    data = prepare_stream(config, tok, seed=42)
    blocks = 0
    for _ in BlockStream(lambda: data.open_train(0, 1), tok, config):
        blocks += 1
        if blocks == STREAMED_BLOCKS:
            break
    return blocks + data.eval_blocks


class TrainingPeak:
    """This process's peak memory from the evaluation before training on: training, not preparing
    (`mlm_toolkit.run.RunHooks`). Resident is the kernel's own high-water mark (VmHWM,
    reset when training starts: exact, and free to read); anonymous is sampled every quarter second."""

    def __init__(self) -> None:
        self.anonymous, self.started = 0, False

    def on_evaluate(self, step: int, eval_loss: float) -> None:
        if not self.started:
            self.started = True
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
            threading.Thread(target=self.sample, daemon=True).start()

    def on_step(self, step: int, loss: float, seconds: float) -> None:
        pass

    @staticmethod
    def status(field: str) -> int:
        """A field of /proc/self/status, in bytes."""
        lines = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in lines if line.startswith(field + ":")).split()[1]) * 1024

    @property
    def peak(self) -> tuple[int, int]:
        return self.status("VmHWM"), self.anonymous

    def sample(self) -> None:
        while True:
            self.anonymous = max(self.anonymous, self.status("RssAnon"))
            time.sleep(0.25)


def train(job: dict) -> int:
    """The pt-mlm run the CLI makes of `pt-mlm train --model builtin:minilm --dataset CORPUS --max-samples 0
    --max-steps N --max-eval-samples 1000 --no-tf-weights`, through the Python API to watch it train."""
    import pt_mlm
    from mlm_toolkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    peak = TrainingPeak()
    with tempfile.TemporaryDirectory() as out:
        run = RunConfig(
            DataConfig(dataset=job["corpus"], max_samples=None, max_eval_samples=1000),
            ModelConfig("builtin:minilm"),
            TrainConfig(output_dir=f"{out}/run", max_steps=job["steps"]),
        )
        results = pt_mlm.train(run, pt_mlm.PTOptions(tf_weights=False), hooks=[peak])
    job["training_peak_rss_mib"], job["training_peak_anon_mib"] = (value / 2**20 for value in peak.peak)
    return results.data["train_blocks"] + results.data["eval_blocks_available"]


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    started = time.perf_counter()
    blocks = {"ours": ours, "long": ours, "guide": guide, "stream": stream, "train": train}[job["recipe"]](job)
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "blocks": blocks, "tokens_per_s": blocks * BLOCK_SIZE / seconds}
    result.update({key: value for key, value in job.items() if key.startswith("training_peak")})
    print("RESULT " + json.dumps(result))
