"""Dataset sources: ELI5 flattening and joining, the built-in corpus, local formats, bad input."""

import json

import pytest

from mlm_toolkit.config import BUILTIN_DATASET, DataConfig
from mlm_toolkit.data import load_rows, load_texts
from mlm_toolkit.errors import RunError, UsageError


def test_eli5_answers_are_flattened_and_joined_per_row(eli5_jsonl):
    rows = load_rows(DataConfig(dataset=str(eli5_jsonl)))
    assert "answers.text" in rows.column_names
    first = json.loads(eli5_jsonl.read_text().splitlines()[0])
    texts = load_texts(DataConfig(dataset=str(eli5_jsonl), test_size=0.5), seed=0)
    assert " ".join(first["answers"]["text"]) in texts.train + texts.test
    assert len(texts.train) + len(texts.test) == 200


def test_max_samples_takes_the_first_rows(eli5_jsonl):
    rows = load_rows(DataConfig(dataset=str(eli5_jsonl), max_samples=10))
    assert list(rows["q_id"]) == [f"q{i}" for i in range(10)]


def test_builtin_corpus_has_the_eli5_schema():
    rows = load_rows(DataConfig(dataset=BUILTIN_DATASET, max_samples=None))
    for column in ("q_id", "title", "category", "answers.text", "answers.a_id", "answers.score"):
        assert column in rows.column_names
    assert 1500 < len(rows) < 5000  # the English files hold about two thousand Q&A pairs
    assert all(isinstance(t, list) and t for t in list(rows["answers.text"]))
    assert len(set(list(rows["category"]))) > 10


def test_local_formats_load_the_same_rows(tmp_path):
    import pandas as pd

    texts = [f"answer number {i} about things" for i in range(30)]
    frame = pd.DataFrame({"text": texts})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    (tmp_path / "d.txt").write_text("\n".join(texts) + "\n")
    for name in ("d.csv", "d.parquet", "d.jsonl", "d.txt"):
        rows = load_rows(DataConfig(dataset=str(tmp_path / name), text_column="text"))
        assert list(rows["text"]) == texts, name


def test_a_folder_of_files_loads_all_of_them(tmp_path):
    for part in range(2):
        (tmp_path / f"part{part}.txt").write_text("\n".join(f"line {part}-{i}" for i in range(5)) + "\n")
    assert len(load_rows(DataConfig(dataset=str(tmp_path), text_column="text"))) == 10


def test_empty_and_non_string_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "good text"}, {"text": ""}, {"text": None}, {"text": "more good text"}, {"text": "   "}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    texts = load_texts(DataConfig(dataset=str(path), text_column="text", test_size=0.5), seed=0)
    assert texts.skipped == 3 and sorted(texts.train + texts.test) == ["good text", "more good text"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.jsonl", "--dataset: no such file"),
        (lambda d: (d / "empty.jsonl").touch() or d / "empty.jsonl", "--dataset: file .* is empty"),
        (
            lambda d: (d / "data.xml").write_text("<a/>") and d / "data.xml",
            "--dataset: unknown format '.xml'",
        ),
        (lambda d: d / "empty_folder", "--dataset: folder .* holds no"),
    ],
)
def test_bad_dataset_paths_name_the_flag(tmp_path, make, match):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(UsageError, match=match):
        load_rows(DataConfig(dataset=str(make(tmp_path))))


def test_missing_text_column_lists_the_columns(eli5_jsonl):
    with pytest.raises(
        UsageError, match=r"--text-column: column 'body' not found; the dataset has .*answers\.text"
    ):
        load_texts(DataConfig(dataset=str(eli5_jsonl), text_column="body"), seed=0)


def test_hub_dataset_offline_fails_fast_naming_the_builtin():
    with pytest.raises(
        RunError,
        match=f"--dataset: 'eli5_category' is a Hub id but HF_HUB_OFFLINE is set; "
        f"use --dataset {BUILTIN_DATASET}",
    ):
        load_rows(DataConfig(dataset="eli5_category"))


@pytest.mark.parametrize("test_size", [0.95, 0.999])
def test_a_test_size_that_leaves_no_train_rows_names_the_flag(eli5_jsonl, test_size):
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.data import load_texts
    from mlm_toolkit.errors import UsageError

    with pytest.raises(UsageError) as error:
        load_texts(DataConfig(dataset=str(eli5_jsonl), max_samples=10, test_size=test_size), seed=42)
    assert str(error.value).startswith("--test-size:")


def test_a_tiny_test_size_still_holds_out_one_row(eli5_jsonl):
    from mlm_toolkit.config import DataConfig
    from mlm_toolkit.data import load_texts

    texts = load_texts(DataConfig(dataset=str(eli5_jsonl), max_samples=10, test_size=0.001), seed=42)
    assert (len(texts.train), len(texts.test)) == (9, 1)
