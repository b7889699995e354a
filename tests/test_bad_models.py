"""Model folders that cannot be used, and fill-mask inputs beyond the model: one line naming the flag, never a
traceback, and what can be done is done (a long text keeps the window around its masks)."""

from __future__ import annotations

import json

import pytest
from pt_helpers import TINY_ARGS, digest, run_child, run_cli
from test_pt_train import trained  # noqa: F401  (a module fixture: one trained tiny RoBERTa)
from tiny_models import BROKEN_MODELS, broken_copy


@pytest.mark.parametrize("how, says", BROKEN_MODELS)
def test_an_unusable_model_folder_is_one_line_for_train_and_fill_mask(tiny_roberta, eli5_jsonl, tmp_path, how, says):
    folder = broken_copy(tiny_roberta, tmp_path, how)
    before = digest(folder)
    for run in (run_child, run_cli):  # train as a user's shell runs it; fill-mask in this process
        out = tmp_path / "out"
        args = (
            ["train", "--model", folder, "--dataset", eli5_jsonl, "--output-dir", out, *TINY_ARGS]
            if run is run_child
            else ["fill-mask", folder, "the cat sees <mask> ball."]
        )
        result = run(*args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.output.strip().splitlines()[-1]
        assert line.startswith("Error: --model:") and says in line, (args[0], line)
    assert digest(folder) == before and not (tmp_path / "out").exists()


def test_a_text_longer_than_the_model_keeps_the_window_around_its_mask(trained):  # noqa: F811
    out, _ = trained
    long = "the cat sees the ball. " * 400 + "a dog <mask> the moon. " + "my friend reads a book. " * 400
    assert len(long) > 10_000
    result = run_cli("fill-mask", out, long, "the <mask> reads a book.", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert [len(item["masks"][0]) for item in printed] == [2, 2]
    assert "a dog" in printed[0]["masks"][0][0]["sequence"]


def test_many_masks_fill_and_masks_too_far_apart_are_refused(trained):  # noqa: F811
    out, _ = trained
    twenty = " ".join(["the <mask>."] * 20)  # within the tiny model's 128 positions
    result = run_cli("fill-mask", out, twenty, "--top-k", "1", "--json")
    assert result.exit_code == 0 and len(json.loads(result.output)[0]["masks"]) == 20
    apart = "a dog <mask> the moon. " + "the cat sees the ball. " * 100 + "my friend <mask> a book."
    result = run_cli("fill-mask", out, apart)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("Error: TEXT: text 1 has masks"), result.output


def test_fill_mask_reads_texts_from_a_file_or_standard_input(trained, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from pt_mlm import main

    out, _ = trained
    lines = ["the cat sees <mask> ball.", "", "a dog <mask> the moon"]
    (tmp_path / "texts.txt").write_text("\n".join(lines) + "\n")
    from_file = run_cli("fill-mask", out, "--file", tmp_path / "texts.txt", "--json")
    from_stdin = CliRunner().invoke(main, ["fill-mask", str(out), "--file", "-", "--json"], input="\n".join(lines))
    for result in (from_file, from_stdin):
        assert result.exit_code == 0, result.output
        assert [item["text"] for item in json.loads(result.output)] == [lines[0], lines[2]]
    nothing = run_cli("fill-mask", out)
    assert nothing.exit_code == 2 and "give the texts to fill" in nothing.output
