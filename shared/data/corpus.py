"""The built-in offline dataset: chatterbot-corpus's English Q&A files read into the ELI5 schema.

Each YAML file holds `conversations`, lists whose first line is a question and whose other lines are
answers, and a category. That maps onto ELI5 (`eli5_category`) rows: the question becomes `title`, the
answers `answers.text`, the file's category `category`, so the guide's flatten-and-join code runs as is.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from mlm_toolkit.errors import RunError


def _english_files() -> list[Any]:
    try:
        root = resources.files("chatterbot_corpus") / "data" / "english"
    except ModuleNotFoundError as error:
        raise RunError(
            "the built-in dataset needs the chatterbot-corpus package: pip install chatterbot-corpus"
        ) from error
    return sorted((f for f in root.iterdir() if f.name.endswith(".yml")), key=lambda f: f.name)


def builtin_eli5_rows() -> list[dict[str, Any]]:
    """All English conversations with at least one answer, as ELI5-shaped rows, in a stable order."""
    rows = []
    for file in _english_files():
        content = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        category = (content.get("categories") or [file.name.removesuffix(".yml")])[0]
        for n, conversation in enumerate(content.get("conversations") or []):
            lines = [str(line).strip() for line in conversation if line is not None and str(line).strip()]
            if len(lines) < 2:
                continue
            q_id = f"{file.name.removesuffix('.yml')}-{n:04d}"
            answers = lines[1:]
            rows.append(
                {
                    "q_id": q_id,
                    "title": lines[0],
                    "selftext": "",
                    "category": str(category),
                    "subreddit": "chatterbot",
                    "answers": {
                        "a_id": [f"{q_id}-{i}" for i in range(len(answers))],
                        "text": answers,
                        "score": [1] * len(answers),
                        "text_urls": [[] for _ in answers],
                    },
                    "title_urls": [],
                    "selftext_urls": [],
                }
            )
    return rows
