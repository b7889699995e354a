"""Dataset sources: ELI5 flattening and joining, the built-in corpus, local formats, bad input."""

import json

import pytest

from mlm_toolkit.config import BUILTIN_DATASET, DataConfig
from mlm_toolkit.data_sources import column_names, load_rows, load_splits
from mlm_toolkit.errors import RunError, UsageError


def texts(splits) -> tuple[list[str], list[str]]:
    return list(splits.train["text"]), list(splits.held_out["text"])


def test_eli5_answers_are_flattened_and_joined_per_row(eli5_jsonl):
    rows = load_rows(DataConfig(dataset=str(eli5_jsonl)))
    assert "answers.text" in column_names(rows)
    first = json.loads(eli5_jsonl.read_text().splitlines()[0])
    splits = load_splits(DataConfig(dataset=str(eli5_jsonl), test_size=0.5), seed=0)
    train, held_out = texts(splits)
    assert splits.text_column == "answers.text"  # the guide's column, found without --text-column
    assert " ".join(first["answers"]["text"]) in train + held_out
    assert len(train) + len(held_out) == 200


def test_max_samples_takes_the_first_rows(eli5_jsonl):
    rows = load_rows(DataConfig(dataset=str(eli5_jsonl), max_samples=10))
    assert list(rows["q_id"]) == [f"q{i}" for i in range(10)]


def test_builtin_corpus_has_the_eli5_schema():
    rows = load_rows(DataConfig(dataset=BUILTIN_DATASET, max_samples=None))
    for column in ("q_id", "title", "category", "answers.text", "answers.a_id", "answers.score"):
        assert column in column_names(rows)
    assert 1500 < len(rows) < 5000  # the English files hold about two thousand Q&A pairs
    assert all(isinstance(a["text"], list) and a["text"] for a in rows["answers"])
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
    splits = load_splits(DataConfig(dataset=str(path), test_size=0.5), seed=0)
    train, held_out = texts(splits)
    assert splits.skipped == 3 and sorted(train + held_out) == ["good text", "more good text"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.jsonl", "--dataset: no such file"),
        (lambda d: (d / "empty.jsonl").touch() or d / "empty.jsonl", "--dataset: file .* is empty"),
        (lambda d: (d / "data.xml").write_text("<a/>") and d / "data.xml", "--dataset: unknown format '.xml'"),
        (lambda d: d / "empty_folder", "--dataset: folder .* holds no"),
    ],
)
def test_bad_dataset_paths_name_the_flag(tmp_path, make, match):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(UsageError, match=match):
        load_rows(DataConfig(dataset=str(make(tmp_path))))


def test_missing_text_column_lists_the_columns(eli5_jsonl):
    with pytest.raises(UsageError, match=r"--text-column: column 'body' not found; the dataset has .*answers\.text"):
        load_splits(DataConfig(dataset=str(eli5_jsonl), text_column="body"), seed=0)


def test_hub_dataset_offline_fails_fast_naming_the_builtin():
    import time

    started = time.perf_counter()
    with pytest.raises(
        RunError,
        match=f"--dataset: 'eli5_category' is a Hub id but HF_HUB_OFFLINE is set; use --dataset {BUILTIN_DATASET}",
    ):
        load_rows(DataConfig(dataset="eli5_category"))
    assert time.perf_counter() - started < 10  # no waiting on retries


@pytest.mark.parametrize("test_size", [0.95, 0.999])
def test_a_test_size_that_leaves_no_train_rows_names_the_flag(eli5_jsonl, test_size):
    with pytest.raises(UsageError) as error:
        load_splits(DataConfig(dataset=str(eli5_jsonl), max_samples=10, test_size=test_size), seed=42)
    assert str(error.value).startswith("--test-size:")


def test_a_tiny_test_size_still_holds_out_one_row(eli5_jsonl):
    splits = load_splits(DataConfig(dataset=str(eli5_jsonl), max_samples=10, test_size=0.001), seed=42)
    assert (len(splits.train), len(splits.held_out)) == (9, 1)


def write_jsonl(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_a_validation_file_is_the_held_out_source(eli5_jsonl, tmp_path):
    validation = write_jsonl(tmp_path / "val.jsonl", [f"held out text {i}" for i in range(7)])
    splits = load_splits(DataConfig(dataset=str(eli5_jsonl), validation_file=str(validation)), seed=0)
    train, held_out = texts(splits)
    assert len(train) == 200, "no rows held out of train: the validation file is the held-out source"
    assert held_out == [f"held out text {i}" for i in range(7)]
    assert splits.held_out_from.startswith("--validation-file")
    with pytest.raises(UsageError, match="--validation-file: no such file"):
        load_splits(DataConfig(dataset=str(eli5_jsonl), validation_file=str(tmp_path / "nope.jsonl")), 0)


def test_a_datasets_own_validation_split_and_config_are_used(tmp_path):
    """A local copy laid out as a Hub dataset repository: split files, and a README declaring configs, read
    through the same `load_dataset` path a Hub id takes."""
    plain = tmp_path / "plain"
    write_jsonl(plain / "train.jsonl", [f"train text {i}" for i in range(10)])
    write_jsonl(plain / "validation.jsonl", [f"validation text {i}" for i in range(3)])
    splits = load_splits(DataConfig(dataset=str(plain)), seed=0)
    assert texts(splits) == ([f"train text {i}" for i in range(10)], [f"validation text {i}" for i in range(3)])
    assert "validation split" in splits.held_out_from

    repo = tmp_path / "repo"
    for name in ("small", "large"):
        write_jsonl(repo / name / "train.jsonl", [f"{name} text {i}" for i in range(6)])
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train.jsonl\n"
            for name in ("small", "large")
        )
        + "---\n"
    )
    large = load_splits(DataConfig(dataset=str(repo), dataset_config="large", test_size=0.5), seed=0)
    assert sorted(sum(texts(large), [])) == sorted(f"large text {i}" for i in range(6))
    assert large.held_out_from.startswith("0.5 of the rows")
    with pytest.raises(UsageError, match="--dataset-config:"):
        load_splits(DataConfig(dataset=str(repo), dataset_config="medium"), seed=0)
    with pytest.raises(UsageError, match="--train-split:"):
        load_splits(DataConfig(dataset=str(plain), train_split="dev"), seed=0)


def test_without_text_column_the_guides_column_or_text_is_read(eli5_jsonl, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i}\n" for i in range(10)))
    assert load_splits(DataConfig(dataset=str(lines)), seed=0).text_column == "text"  # as run_mlm.py
    assert load_splits(DataConfig(dataset=str(eli5_jsonl)), seed=0).text_column == "answers.text"
    other = write_jsonl(tmp_path / "other.jsonl", ["x"] * 4)
    other.write_text(other.read_text().replace('"text"', '"body"'))
    with pytest.raises(UsageError, match="--text-column: the dataset has neither answers.text nor text"):
        load_splits(DataConfig(dataset=str(other)), seed=0)


def test_a_top_level_column_named_with_a_dot_is_read_as_itself(tmp_path):
    data = tmp_path / "dotted.jsonl"
    data.write_text("".join(json.dumps({"a.b": f"text {i}", "a": {"b": "nested"}}) + "\n" for i in range(20)))
    splits = load_splits(DataConfig(dataset=str(data), text_column="a.b", test_size=0.25), seed=0)
    texts = sorted([*splits.train["text"], *splits.held_out["text"]])
    assert texts == sorted(f"text {i}" for i in range(20))
