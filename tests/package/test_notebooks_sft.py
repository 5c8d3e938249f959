"""The data_sft notebooks run end to end on small data: concatenation → gen_dis → filter.

The notebooks' "parameters" cell is replaced with paths to temporary files; everything
else runs as shipped (nbclient, a real kernel)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from magpie.dedup import run_distance

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "data_sft"


def execute(name: str, params: dict, cwd: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'parameters'"
    cells[0].source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.fixture()
def kernel_env(monkeypatch):
    """The kernel imports the package from this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{path}" if path else str(REPO))


def shard(path: Path, texts: list[str], quality: str = "good") -> str:
    records = [
        {
            "id": i,
            "instruction": t,
            "response": f"An answer to: {t}",
            "input_quality": quality if not t.endswith(":") else "excellent",
            "task_category": "Others",
            "instruct_reward": 1.0,
            "instruction_flag": None,
        }
        for i, t in enumerate(texts)
    ]
    path.write_text(json.dumps(records))
    return str(path)


def test_concatenation_dedup_filter_chain(tmp_path, kernel_env):
    shard(tmp_path / "s0_language.json", ["Explain the water cycle.", "Write a haiku about rain."])
    shard(
        tmp_path / "s1_language.json",
        ["explain the water cycle", "List three colours:", "What is DNA?"],
    )
    shard(tmp_path / "s2_language.json", ["Tell me a joke."], quality="poor")
    sharegpt = tmp_path / "P_sharegpt.jsonl"
    execute(
        "data_concatenation.ipynb",
        {
            "shards": [str(tmp_path / "s*_language.json")],
            "id_prefix": "P",
            "output_file": str(sharegpt),
            "messages_file": str(tmp_path / "P_messages.jsonl"),
            "dataset_dir": None,
        },
        tmp_path,
    )
    rows = [json.loads(x) for x in sharegpt.read_text().splitlines()]
    assert [r["conversation_id"] for r in rows] == [f"P_{n}" for n in range(6)]
    assert all(r["task_category"] == "Others" for r in rows)

    run_distance(sharegpt, progress=False)
    distance = tmp_path / "P_sharegpt_distance.jsonl"
    execute(
        "data_filter.ipynb",
        {
            "input_file": str(distance),
            "preset": str(REPO / "configs" / "filters" / "magpie-300k.yaml"),
            "overrides": {},
            "output_file": str(tmp_path / "kept.jsonl"),
            "rejected_file": str(tmp_path / "rejected.jsonl"),
        },
        tmp_path,
    )
    kept = {
        json.loads(x)["instruction"] for x in (tmp_path / "kept.jsonl").read_text().splitlines()
    }
    assert kept == {"Explain the water cycle.", "Write a haiku about rain.", "What is DNA?"}
    rejected = {
        json.loads(x)["instruction"]: json.loads(x)["filter_reason"]
        for x in (tmp_path / "rejected.jsonl").read_text().splitlines()
    }
    assert rejected == {
        "explain the water cycle": "remove_duplicates",
        "List three colours:": "no_trailing_colon",
        "Tell me a joke.": "input_quality",
    }
