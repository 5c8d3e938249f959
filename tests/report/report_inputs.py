"""Inputs of the report page's tests: a real run folder made by the stages themselves on a
tiny model (the default job's stages, small), hand-made tagged records, and records full
of hostile strings. Expected numbers come from reading the files with json, not from
magpie. (Not a conftest.py: a second module named conftest would shadow tests/conftest.py
for the test modules that import it by name.)"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from report_browser import available, open_browser

from magpie.labels import DIFFICULTY, INPUT_QUALITY, TASK_CATEGORIES

HOSTILE = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '<a href="javascript:window.__pwned=1">click me</a>',
    "javascript:window.__pwned=1",
    "</script><script>window.__pwned=1</script>",
    "line\u2028separator\u2029paragraph",
    '<svg onload="window.__pwned=1"></svg>',
    "{{constructor.constructor('window.__pwned=1')()}}",
]


def read_json_records(path: Path) -> list[dict]:
    """Records read with json alone (.jsonl: one per non-blank line), not with magpie."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    return json.loads(text)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory, ending_model_dir) -> Path:
    """The default job's stages (gen_ins → gen_res → unitag → concat → gen_dis → filter)
    run for real on a tiny model, with the report stage last, as a recipe ends with it."""
    import magpie

    out = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the stages' summary lines
        outputs = magpie.run(
            {
                "model": str(ending_model_dir),
                "seed": 5,
                "timestamp": 1000,
                "output_dir": str(out),
                "batch_size": 8,
                "stages": [
                    {"gen_ins": {"total_prompts": 24, "n": 8, "max_tokens": 16}},
                    {"gen_res": {"max_tokens": 24, "temperature": 0.8}},
                    {"unitag": {"tag_mission": "language"}},
                    {"concat": {"id_prefix": "run"}},
                    {"gen_dis": {}},
                    {"filter": {"config": "magpie"}},
                    {"report": {"whole_run": True}},
                ],
            }
        )
    assert outputs["report"] == out / "report.html"
    (out / "run.log").write_text(printed.getvalue(), encoding="utf-8")  # not a records file
    return out


def tagged_record(i: int) -> dict:
    """A record as the full pipeline leaves it (tags, reward, distance, flags)."""
    return {
        "conversation_id": f"tag_{i}",
        "conversations": [
            {"from": "system", "value": "You are a helpful assistant."},
            {"from": "human", "value": f"Question number {i}: how do magpies nest?"},
            {
                "from": "gpt",
                "value": f"Answer {i}. " + "Magpies build domed nests. " * (i % 7),
                "reasoning": f"thinking about question {i}" if i % 5 == 0 else None,
            },
        ],
        "task_category": TASK_CATEGORIES[i % len(TASK_CATEGORIES)] if i % 9 else None,
        "other_task_category": [],
        "difficulty": DIFFICULTY[i % len(DIFFICULTY)] if i % 4 else None,
        "difficulty_confidence": 0.5 + (i % 5) / 10,
        "input_quality": INPUT_QUALITY[(i * 3) % len(INPUT_QUALITY)] if i % 6 else None,
        "input_quality_confidence": 0.4 + (i % 6) / 10,
        "sample_quality": (i % 5) + 1,
        "instruct_reward": (i % 11) - 5.0,
        "language": ["EN", "FR", "DE"][i % 3],
        "llama_guard_2": "safe",
        "min_neighbor_distance": (i % 10) / 20,
        "repeat_count": 2 if i in (1, 2, 3) else 0,  # how many *other* records are near
        "min_similar_conversation_id": "tag_1" if i in (1, 2, 3) else None,
        "instruction_flag": "unfinished" if i % 13 == 0 else None,
        "response_flag": None,
    }


@pytest.fixture(scope="session")
def tagged_file(tmp_path_factory) -> Path:
    """300 hand-made records with every tag, one per line."""
    path = tmp_path_factory.mktemp("tagged") / "tagged_distance.jsonl"
    records = [tagged_record(i) for i in range(300)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def hostile_file(tmp_path_factory) -> Path:
    """Records whose text, tags, ids and flags hold markup, script and line separators."""
    records = []
    for i, text in enumerate(HOSTILE):
        records.append(
            {
                "conversation_id": f"{text} #{i}",
                "instruction": f"{text} instruction",
                "response": f"{text} response",
                "reasoning": f"{text} reasoning",
                "task_category": text,
                "language": text,
                "llama_guard_2": text,
                "intent": text,
                "min_similar_conversation_id": f"{text} #0",
                "repeat_count": 2,
                "min_neighbor_distance": 0.01,
                "response_flag": text,
            }
        )
    path = tmp_path_factory.mktemp("hostile") / "hostile.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module (closing and opening costs a second)."""
    if not available():
        pytest.fail("chromium and chromedriver are needed (.ci/run installs them)")
    driver = open_browser()
    yield driver
    driver.quit()
