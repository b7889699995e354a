"""pt-mlm against the guide's `Trainer`, step for step: same initial weights, same masked batches.

Dropout is off in the model both train, so the only randomness left is the masking, and both are given
the very batches pt-mlm draws. What remains is the arithmetic: the loss (pt-mlm's sparse head against
the model's dense one), accumulation, clipping, AdamW with its no-decay groups, and the schedule.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pt_helpers import load_state, pt_mlm_batches

STEPS, BATCH, ACCUMULATION, LR = 20, 4, 2, 1e-3


@pytest.fixture(scope="module")
def no_dropout_roberta(tiny_roberta, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("no-dropout") / "roberta"
    shutil.copytree(tiny_roberta, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def pt_mlm_run(model: Path, data: Path, out: Path, accumulation: int = ACCUMULATION, **train) -> dict:
    """pt-mlm's results (as all_results.json holds them), trained through its Python API."""
    import pt_mlm
    from mlm_toolkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    settings = dict(
        output_dir=str(out), learning_rate=LR, per_device_batch_size=BATCH, max_steps=STEPS, eval_batch_size=32
    )
    run = RunConfig(
        DataConfig(dataset=str(data), block_size=32),
        ModelConfig(model=str(model)),
        TrainConfig(**{**settings, **train}),
    )
    options = pt_mlm.PTOptions(log_every=1, tf_weights=False, gradient_accumulation_steps=accumulation)
    return pt_mlm.train(run, options).to_dict()


def trainer_run(model: Path, batches: list[dict[str, torch.Tensor]], out: Path, max_grad_norm: float):
    """The guide's Trainer recipe on exactly these batches, in this order; returns (step losses, model)."""
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForMaskedLM, Trainer, TrainingArguments, default_data_collator

    examples = [
        {"input_ids": ids, "labels": labels}
        for batch in batches
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True)
    ]
    window_losses: list[float] = []

    class InOrderTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)  # the batches above, not a reshuffle of them

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)  # the micro-batch loss / accumulation steps
            window_losses.append(float(loss))
            return loss

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        learning_rate=LR,
        weight_decay=0.01,
        max_steps=STEPS,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=max_grad_norm,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
        disable_tqdm=True,
    )
    reference = AutoModelForMaskedLM.from_pretrained(model)  # the stock model, its products on MKL
    trainer = InOrderTrainer(
        model=reference,
        args=args,
        train_dataset=examples,
        data_collator=default_data_collator,
    )
    trainer.train()
    step_losses = np.add.reduceat(window_losses, np.arange(0, len(window_losses), ACCUMULATION))
    grad_norms = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    return step_losses, grad_norms, trainer.model


@pytest.mark.slow
@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0], ids=["clipped", "unclipped"])
def test_pt_mlm_matches_the_trainer_step_for_step(
    no_dropout_roberta, eli5_jsonl, tmp_path, max_grad_norm, monkeypatch
):
    import pt_mlm.training

    # Our side with its oneDNN products wherever PyTorch has them (the product uses them on AVX-512 CPUs only),
    # the Trainer as shipped: the comparison covers our kernels too.
    monkeypatch.setattr(pt_mlm.training, "onednn_pays", lambda: hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    ours = pt_mlm_run(no_dropout_roberta, eli5_jsonl, tmp_path / "pt", max_grad_norm=max_grad_norm)
    reference_losses, reference_norms, reference = trainer_run(
        no_dropout_roberta,
        pt_mlm_batches(no_dropout_roberta, eli5_jsonl, STEPS * ACCUMULATION),
        tmp_path / "hf",
        max_grad_norm,
    )
    log = ours["loss_log"]
    assert log["steps"] == list(range(1, STEPS + 1))
    # The tolerances are float32's: a product summed in another order (oneDNN's against MKL's) differs by a few
    # ulp (2^-24 = 6e-8 relative each), which 20 steps carry on. Measured (2026-12-06, AVX2 EPYC): losses within
    # 2.2e-7 relative, weights within 1.6e-7 (they moved by 1e-2), gradient norms within 7e-8.
    np.testing.assert_allclose(log["losses"], reference_losses, rtol=1e-6)
    if max_grad_norm:
        assert max(reference_norms) > max_grad_norm, "clipping must have acted for this test to test it"
        np.testing.assert_allclose(log["grad_norms"], reference_norms, rtol=1e-5)
    trained, initial, reference_state = (
        load_state(tmp_path / "pt"),
        load_state(no_dropout_roberta),
        reference.state_dict(),
    )
    moved = max(float((trained[k] - initial[k]).abs().max()) for k in trained.keys() & initial.keys())
    assert moved > 1e-3, "training moved the weights"
    for name, weight in trained.items():
        torch.testing.assert_close(weight, reference_state[name], rtol=1e-5, atol=1e-6, msg=name)


def test_each_micro_batch_of_a_window_draws_its_own_dropout(tiny_roberta, eli5_jsonl, tmp_path, monkeypatch):
    """The loop seeds each micro-batch's dropout from its place (epoch, batch, process): a pure function,
    so a resumed run redraws the same, different for each micro-batch of a window and each process."""
    import pt_mlm.training
    from mlm_toolkit.masking import micro_batch_seed

    seeds = []

    class Recording(pt_mlm.training.MaskedTokenLoss):
        def forward(self, *args, **kwargs):
            if self.training:  # the seed the dropout of this forward draws from
                seeds.append(torch.initial_seed())
            return super().forward(*args, **kwargs)

    monkeypatch.setattr(pt_mlm.training, "MaskedTokenLoss", Recording)
    pt_mlm_run(tiny_roberta, eli5_jsonl, tmp_path / "out", max_steps=3)  # dropout on: 3 steps x 2
    assert seeds == [micro_batch_seed(42, 0, batch, 0) for batch in range(3 * ACCUMULATION)]
    assert len(set(seeds)) == len(seeds)
    assert micro_batch_seed(42, 0, 0, 1) != seeds[0] and micro_batch_seed(42, 1, 0, 0) != seeds[0]
