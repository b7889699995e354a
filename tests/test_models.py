"""Model resolution: built-in, local folders, Hub ids offline, and models that cannot do MLM."""

import pytest

from mlm_toolkit.config import BUILTIN_MODEL
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.models import load_checked, resolve_model


def test_hub_id_offline_fails_fast_naming_the_builtin():
    with pytest.raises(
        RunError,
        match=f"--model: 'distilbert/distilroberta-base' is a Hub id but HF_HUB_OFFLINE is set; "
        f"use --model {BUILTIN_MODEL}",
    ):
        resolve_model("distilbert/distilroberta-base")


def test_builtin_model_resolves_to_the_packaged_encoder():
    resolved = resolve_model(BUILTIN_MODEL)
    config, tokenizer = load_checked(resolved, 128)
    assert config.model_type == "bert" and tokenizer.mask_token == "[MASK]"


def test_block_size_beyond_the_models_positions(tiny_roberta):
    with pytest.raises(UsageError, match=r"--block-size: 4096 is more than .* \(128 positions\)"):
        load_checked(resolve_model(str(tiny_roberta)), 4096)


def test_folder_without_config_and_missing_paths(tmp_path):
    with pytest.raises(UsageError, match="--model: folder .* has no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(UsageError, match="--model: no such model folder"):
        resolve_model(str(tmp_path / "nope"))


def test_a_model_that_is_not_a_masked_lm(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=1).save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="--model: .* is a 'gpt2' model, which has no masked-LM head"):
        load_checked(resolve_model(str(tmp_path)), 16)


def test_a_tokenizer_without_mask_token(tiny_roberta, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "nomask"
    shutil.copytree(tiny_roberta, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.mask_token = None
    tokenizer.save_pretrained(folder)
    with pytest.raises(UsageError, match="--model: the tokenizer of .* has no mask token"):
        load_checked(resolve_model(str(folder)), 16)


def test_builtin_model_fills_a_mask_offline():
    from pt_mlm import MaskFiller

    predictions = MaskFiller(BUILTIN_MODEL)("The Milky Way is a <mask> galaxy.", top_k=3)
    assert len(predictions) == 3 and all(0 < p["score"] < 1 for p in predictions)
    assert all(p["sequence"].startswith("the milky way is a") for p in predictions)  # uncased BERT vocabulary


def test_a_url_as_model_is_one_line_naming_the_hub_id():
    from pt_helpers import run_cli

    import pt_mlm

    result = run_cli("fill-mask", "https://huggingface.co/distilbert/distilroberta-base", "the <mask>.")
    expected = (
        "--model: 'https://huggingface.co/distilbert/distilroberta-base' is neither a model folder nor a Hub id "
        "(such as 'distilbert/distilroberta-base')"
    )
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == f"Error: {expected}"
    with pytest.raises(UsageError, match="is neither a model folder nor a Hub id"):
        pt_mlm.MaskFiller("https://huggingface.co/x")
