"""The dataset card beside concat's export, its Parquet shards read back by `datasets`,
and --push_to_hub up to the network call (huggingface_hub's methods replaced by
autospec'd doubles, so that their signatures are checked).

Inputs are hand-written tagged records; expected values come from what the test wrote."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import DatasetCard, HfApi

from magpie.card import size_category
from magpie.records import InputError
from magpie.stages.concat import Concat
from magpie.stages.filter import Filter

REPO = Path(__file__).resolve().parents[2]
LANGUAGES = ["EN", "fr", "EN", "De", None, "en", "EN"]
SECRET = "hf_SECRETtoken0123456789"


def tagged(i: int, **extra) -> dict:
    """A record as gen_res + unitag write it."""
    record = {
        "id": i,
        "instruction": f"Question {i}?",
        "response": f"Answer {i}.",
        "instruction_flag": None,
        "response_flag": None,
        "input_quality": "good",
        "instruct_reward": 0.5,
        "difficulty": "easy",
        "task_category": "Math",
        "language": LANGUAGES[i % len(LANGUAGES)],
    }
    record.update(extra)
    return record


def shards(folder: Path, n: int = len(LANGUAGES)) -> list[str]:
    """Two shards of tagged records, fields varying between records as real runs do:
    one record carries a field no other has, an empty object, an integer where others
    hold a float, and a multi-turn conversation."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [tagged(i) for i in range(n)]
    records[1]["tag_errors"] = {"difficulty": "unparsed: no JSON"}
    records[2]["gen_response_configs"] = {}
    records[3]["instruct_reward"] = 2
    records[4].update(instruction_2="And then?", response_2="Then this.")
    a, b = folder / "a_tagged.json", folder / "b_tagged.jsonl"
    a.write_text(json.dumps(records[:3]))
    b.write_text("".join(json.dumps(r) + "\n" for r in records[3:]))
    return [str(a), str(b)]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def test_concat_writes_a_card_in_the_hub_format(tmp_path):
    out = Concat(input_files=shards(tmp_path), id_prefix="demo", license="apache-2.0").run()
    card = DatasetCard.load(out.parent / "README.md")
    data = card.data.to_dict()
    expected = sorted({x.lower() for x in LANGUAGES if x})
    assert sorted(data["language"]) == expected
    assert data["license"] == "apache-2.0"
    assert data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["text-generation"]
    assert {"synthetic", "magpie"} <= set(data["tags"])
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": out.name}]}
    ]
    body = card.text
    n = len(LANGUAGES)
    assert f"| concat | `{out.name}` | {n} | {n} |" in body
    assert "magpie-concat --id_prefix demo --license apache-2.0" in body
    assert "No filter was run on this export yet." in body


def test_filter_brings_the_card_up_to_date(tmp_path):
    out = Concat(input_files=shards(tmp_path), id_prefix="demo").run()
    kept = Filter(input_file=str(out), language="en").run()
    card = DatasetCard.load(out.parent / "README.md")
    configs = card.data.to_dict()["configs"]
    assert configs[1] == {
        "config_name": "filtered",
        "data_files": [{"split": "train", "path": kept.name}],
    }
    n = len(LANGUAGES)
    english = sum(1 for x in LANGUAGES if x and x.lower() == "en")
    assert (
        f"| filter | `{kept.name}` | {n} | {english} | none; rejected by rule: language {n - english} |"
        in card.text
    )
    assert '"language": ["EN"]' in card.text  # the filter's rules, as it reads them


def test_recipe_of_the_run_folder_goes_on_the_card(tmp_path):
    recipe = "stages:\n  - gen_ins: {total_prompts: 7}\n  - concat: {id_prefix: demo}\n"
    (tmp_path / "recipe.yaml").write_text(recipe)
    out = Concat(input_files=shards(tmp_path / "data"), id_prefix="demo").run()
    text = (out.parent / "README.md").read_text()
    assert "```yaml\n" + recipe.rstrip() + "\n```" in text


def test_parquet_shards_load_with_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "hub"
    out = Concat(
        input_files=shards(tmp_path / "src"),
        id_prefix="demo",
        parquet_dir=str(folder),
        shard_records=3,
    ).run()
    n = len(LANGUAGES)
    names = sorted(p.name for p in (folder / "data").iterdir())
    assert names == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    import pyarrow.parquet as pq

    sizes = [pq.ParquetFile(folder / "data" / name).metadata.num_rows for name in names]
    assert sizes == [3, 3, 1]
    card = DatasetCard.load(folder / "README.md")
    assert card.data.to_dict()["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"}
    ]
    import datasets

    ds = datasets.load_dataset(str(folder))
    rows = lines(out)
    assert list(ds) == ["train"] and ds["train"].num_rows == n
    assert ds["train"]["conversations"] == [r["conversations"] for r in rows]
    assert ds["train"]["conversation_id"] == [f"demo_{i}" for i in range(n)]
    assert ds["train"]["instruct_reward"] == [float(r["instruct_reward"]) for r in rows]
    # a field one record has is kept for it, null elsewhere
    assert ds["train"]["tag_errors"][1] == {"difficulty": "unparsed: no JSON"}
    assert ds["train"]["tag_errors"][0] is None
    # the export beside its own card loads too (the JSONL through the card's configs)
    beside = datasets.load_dataset(str(out.parent))
    assert beside["train"]["conversations"] == [r["conversations"] for r in rows]


def test_push_to_hub_arguments_checked_and_token_never_written(
    tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    seen: dict = {}

    def upload(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        seen["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        seen["token"] = self.token
        return None

    with (
        mock.patch.object(HfApi, "create_repo", autospec=True) as create,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload) as up,
        caplog.at_level(logging.DEBUG),
    ):
        out = Concat(
            input_files=shards(tmp_path), id_prefix="demo", push_to_hub="me/demo", private=True
        ).run()
    folder = out.with_name(f"{out.stem}_parquet")
    create.assert_called_once_with(
        mock.ANY, "me/demo", repo_type="dataset", exist_ok=True, private=True
    )
    assert up.call_count == 1
    kwargs = up.call_args.kwargs
    assert kwargs["repo_id"] == "me/demo" and kwargs["repo_type"] == "dataset"
    assert Path(kwargs["folder_path"]) == folder
    assert kwargs["delete_patterns"] == ["data/train-*.parquet"]  # no stale shards left
    assert "README.md" in seen["files"] and "data/train-00000-of-00001.parquet" in seen["files"]
    assert seen["token"] == SECRET  # given to huggingface_hub, and only to it
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err + caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_push_to_hub_without_a_token_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    files = shards(tmp_path)
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True) as create,
        pytest.raises(InputError, match="HF_TOKEN"),
    ):
        Concat(input_files=files, id_prefix="demo", push_to_hub="me/demo").run()
    assert not create.called
    assert not (tmp_path / "demo_sharegpt.jsonl").exists()
    assert not (tmp_path / "README.md").exists()


def test_cli_parquet_flag(tmp_path):
    files = shards(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "exp" / "concat.py"),
            *files,
            "--id_prefix",
            "cli",
            "--parquet_dir",
            str(tmp_path / "pq"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pq" / "data" / "train-00000-of-00001.parquet").is_file()
    assert (tmp_path / "pq" / "README.md").is_file() and (tmp_path / "README.md").is_file()


@pytest.mark.parametrize(
    ("n", "label"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (99_999, "10K<n<100K"), (10**6, "1M<n<10M")],
)
def test_size_categories(n, label):
    assert size_category(n) == label


def test_a_readme_of_the_users_own_is_never_replaced(tmp_path, caplog):
    files = shards(tmp_path)
    mine = "# My project\n\nHand-written notes.\n"
    (tmp_path / "README.md").write_text(mine)
    with caplog.at_level(logging.WARNING):
        out = Concat(input_files=files, id_prefix="demo").run()
        Filter(input_file=str(out), language="en").run()
    assert (tmp_path / "README.md").read_text() == mine
    assert "not a card magpie wrote" in caplog.text


def test_card_says_which_filter_rules_were_not_applied(tmp_path):
    """The magpie preset's reward rule has no field to read when no record was scored:
    the filter does not apply it, and the card says so rather than listing it."""
    files = shards(tmp_path)
    for name in files:  # no reward model ran
        path = Path(name)
        records = json.loads(path.read_text()) if path.suffix == ".json" else lines(path)
        for r in records:
            r.pop("instruct_reward")
        if path.suffix == ".json":
            path.write_text(json.dumps(records))
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = Concat(input_files=files, id_prefix="demo").run()
    Filter(input_file=str(out), config="magpie", remove_duplicates=False).run()
    text = (tmp_path / "README.md").read_text()
    section = text[text.index("## Filters") :]
    assert "min_instruct_reward not applied" in section
    assert '"min_instruct_reward"' not in section
    assert '"input_quality": ["good", "excellent"]' in section


def test_cli_push_without_a_token_exits_2_before_any_work(tmp_path):
    files = shards(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "exp" / "concat.py"), *files, "--push_to_hub", "me/x"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "HF_TOKEN" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "magpie_sharegpt.jsonl").exists()


def test_parquet_shards_and_row_groups_hold_what_they_are_asked(tmp_path):
    import pyarrow.parquet as pq

    from magpie.hub import write_parquet

    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps({"n": i, "conversations": []}) + "\n" for i in range(7)))
    names = write_parquet(src, tmp_path / "pq", shard_records=5, row_group_records=2)
    files = [pq.ParquetFile(name) for name in names]
    assert [f.metadata.num_rows for f in files] == [5, 2]
    groups = [[f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] for f in files]
    assert groups == [[2, 2, 1], [2]]
    assert [r["n"] for f in files for r in f.read().to_pylist()] == list(range(7))
    assert sorted(p.name for p in (tmp_path / "pq" / "data").iterdir()) == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]  # no temporary file left


def test_secret_settings_stay_off_the_card_and_settings_named_like_them_stay_on():
    from magpie.card import _public

    settings = {"max_tokens": 256, "stop_token_ids": [2], "hf_token": SECRET, "api_key": "k"}
    assert _public(settings) == {"max_tokens": 256, "stop_token_ids": [2]}
