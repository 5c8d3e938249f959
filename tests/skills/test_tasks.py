"""Task files and the skills builder: validation, judge parsing, end-to-end runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from magpie.records import InputError, read_records, state_path
from magpie.skills import load_templates, read_rating, split_questions
from magpie.tasks import load_task

TASKS = REPO / "tasks"


def write(tmp_path: Path, task: dict, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(task))
    return path


def skills_task(**extra) -> dict:
    return {
        "task_name": "t",
        "created_by": "me",
        "task_description": "d",
        "data_builder": "instructlab/skills",
        "seed_examples": [{"question": "q?", "answer": "a."}],
        **extra,
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task_name": None}, "field 'task_name' is not a non-empty string"),
        ({"data_builder": "magic"}, "field 'data_builder': unknown builder 'magic'"),
        ({"colour": "blue"}, "field 'colour' is unknown for instructlab/skills"),
        ({"seed_examples": []}, "field 'seed_examples' must be a non-empty list"),
        ({"seed_examples": [{"question": "q"}]}, r"field 'seed_examples\[0\].answer' is missing"),
        ({"task_name": "../escape"}, "field 'task_name' must be letters"),
    ],
)
def test_bad_task_files_name_file_and_field(tmp_path, change, message):
    task = skills_task()
    task.update(change)
    if change.get("task_name", "") is None:
        del task["task_name"]
        message = "field 'task_name' is missing"
    path = write(tmp_path, task)
    with pytest.raises(InputError, match=message) as e:
        load_task(path)
    assert str(path) in str(e.value)


def test_missing_builder_field_and_bad_yaml(tmp_path):
    task = skills_task()
    del task["seed_examples"]
    with pytest.raises(InputError, match="field 'seed_examples' is missing"):
        load_task(write(tmp_path, task))
    bad = tmp_path / "bad.yaml"
    bad.write_text("task_name: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_task(bad)
    with pytest.raises(InputError, match="task file not found"):
        load_task(tmp_path / "none.yaml")
    transform = {
        "task_name": "x",
        "created_by": "me",
        "task_description": "d",
        "data_builder": "magpie_tag_transform",
        "seed_datastore": {"type": "s3"},
    }
    with pytest.raises(InputError, match="'seed_datastore' needs type: default and data_path"):
        load_task(write(tmp_path, transform))


def test_shipped_tasks_load_and_resolve_paths():
    builders = []
    for path in sorted(TASKS.glob("*.yaml")):
        task = load_task(path)
        builders.append(task["data_builder"])
        if task["data_builder"] == "magpie_tag_transform":
            assert Path(task["seed_datastore"]["data_path"]).exists()
    assert sorted(builders) == ["instructlab/skills", "instructlab/skills", "magpie_tag_transform"]


def test_split_questions_reads_common_shapes():
    text = "### Question 1: What is A?\n### Question 2: Why B?\n\n### Question 3: How C works?"
    assert split_questions(text) == ["What is A?", "Why B?", "How C works?"]
    assert split_questions("**Question 1:** Name a fruit.\n**Question 2:** Name a tree.") == [
        "Name a fruit.",
        "Name a tree.",
    ]
    assert split_questions("1. First question here?\n2. Second question here?") == [
        "First question here?",
        "Second question here?",
    ]
    assert split_questions("") == []


def test_split_questions_keeps_a_question_with_its_own_list_whole():
    # Issue 13: "Plan a trip:\n1. flights\n2. hotel" is ONE question.
    trip = "Plan a trip:\n1. flights\n2. hotel"
    assert split_questions(trip) == [trip]
    blocks = f"### Question 1: {trip}\n### Question 2: Why is the sky blue?"
    assert split_questions(blocks) == [trip, "Why is the sky blue?"]
    # A labelled list ("Task N:") inside a "Question N" block is not a question marker.
    week = "Plan my week:\nTask 1: laundry\nTask 2: shopping"
    assert split_questions(f"**Question 1:** {week}\n**Question 2:** Name a tree.") == [
        week,
        "Name a tree.",
    ]
    # Numbered questions, one with a list of its own (restarting at 1, or indented).
    listed = "1. Plan a trip:\n1. flights\n2. hotel\n3. car rental\n2. Why is the sky blue?"
    assert split_questions(listed) == [f"{trip}\n3. car rental", "Why is the sky blue?"]
    indented = "1. Plan a trip:\n   1. flights\n   2. hotel\n2. Name a tree."
    assert split_questions(indented) == ["Plan a trip:\n   1. flights\n   2. hotel", "Name a tree."]
    # An introduction that announces questions is not part of one.
    assert split_questions("Here are two new questions:\n1. What is A?\n2. What is B?") == [
        "What is A?",
        "What is B?",
    ]


@pytest.mark.parametrize(
    "text, ratings, constrained, expected",
    [
        ('{"explanation": "fine", "rating": 1}', [0, 1], True, 1),
        ('"explanation": "fine", "rating": 0}', [0, 1], False, 0),  # after a "{" prefill
        ('{"explanation": "fine", "rating": 1}', [0, 1], False, 1),  # whole object anyway
        ('{"explanation": "x", "rating": "3"}', [1, 2, 3], True, 3),
        ('{"explanation": "x", "rating": 2.0}', [1, 2, 3], True, 2),
        ('{"explanation": "x", "rating": 7}', [1, 2, 3], True, None),
        ('{"explanation": "x", "rating": true}', [0, 1], True, None),
        ("I think it is good", [0, 1], True, None),
    ],
)
def test_judge_ratings_are_parsed_or_rejected_with_a_reason(text, ratings, constrained, expected):
    rating, reason = read_rating(text, ratings, constrained)
    assert rating == expected
    assert (reason is None) == (expected is not None)
    if expected is None:
        assert reason.startswith("unparseable judgement")


def test_prompt_templates_can_be_overridden(tmp_path):
    (tmp_path / "validate_question.txt").write_text("Rate $question for $task_description.")
    templates = load_templates(tmp_path)
    assert templates["validate_question"].template.startswith("Rate $question")
    assert "$task_description" in templates["generate_questions"].template  # the default


# ------------------------------------------------------------------ end to end, real model
LABELS = {
    "input_quality": {"very poor", "poor", "average", "good", "excellent"},
    "difficulty": {"very easy", "easy", "medium", "hard", "very hard"},
}


# Small runs of the shipped examples that keep items on the embedded default (seeded).
E2E = {"num_samples": 3, "max_iterations": 2, "num_questions_to_generate_per_prompt": 3}


def small(task_file: Path, tmp_path: Path, **changes) -> Path:
    task = yaml.safe_load(task_file.read_text())
    task.update(changes)
    return write(tmp_path, task, task_file.name)


def check_counts(summary: dict) -> None:
    for step, c in summary["steps"].items():
        if step in ("parse_questions", "exact_duplicate"):
            continue  # rejections of whole generations / of repeats, no "made" count
        assert c["made"] == c["kept"] + c["rejected"], (step, c)


def fitted_rules(out: Path, summary: dict, task: dict) -> dict:
    """The default filter's label rules as the run applied them: widened only where they
    rejected a seed example, to the labels from the lowest a seed got upward."""
    from magpie.tasks import _RULE_LABELS, SKILLS_FILTER

    seeds = read_records(out / "seed_examples_quality_sample_quality.jsonl")
    assert len(seeds) == len(task["seed_examples"])
    fitted = summary.get("filter_fitted_to_seeds", {})
    rules = {}
    for rule, order in _RULE_LABELS.items():
        labels = [r[rule] for r in seeds]
        assert all(label in order for label in labels)  # every seed tagged
        if all(label in SKILLS_FILTER[rule] for label in labels):
            assert rule not in fitted
            rules[rule] = SKILLS_FILTER[rule]
        else:
            lowest = min(order.index(label) for label in labels)
            assert fitted[rule]["now"] == [
                x for x in order if x in SKILLS_FILTER[rule] or order.index(x) >= lowest
            ]
            rules[rule] = fitted[rule]["now"]
    return rules


def check_outputs(out: Path, summary: dict, task_file: Path, grounded: bool = False) -> list[dict]:
    """The run reached tagging, near-duplicate marking and the filter with items kept, and
    every kept item is a real question with an answer, tagged and passing the filter."""
    path = out / "final_data.jsonl"
    final = read_records(path) if path.stat().st_size else []
    assert final, summary  # items got through: the checks below run
    assert summary["kept"] == len(final) >= 1
    assert summary["generated"] >= len(final)
    task = yaml.safe_load(task_file.read_text())
    seeds = {s["question"] for s in task["seed_examples"]}
    rules = fitted_rules(out, summary, task)
    step_a = "validate_grounded_answer" if grounded else "validate_answer"
    step_q = "validate_grounded_question" if grounded else "validate_question"
    for r in final:
        q, a = r["question"].strip(), r["answer"].strip()
        assert q.endswith("?") and "\n" not in q and len(q) >= 15, q  # a question, not a title
        assert q not in seeds
        assert a and a.lower() != q.lower() and not a.lower().startswith(q.lower()), (q, a)
        assert r["instruction"].endswith(q) and r["response"] == r["answer"]
        assert (r["context"] is not None) == grounded
        assert r["judge_ratings"][step_q] == 1
        assert r["judge_ratings"][step_a] is None  # the embedded judge is not asked
        # Tags: the two the embedded tagger can judge, as the filter asks; difficulty null
        # with the reason (it cannot judge it).
        assert r["input_quality"] in rules["input_quality"]
        assert r["sample_quality"] in rules["sample_quality"]
        assert 0 < r["input_quality_confidence"] <= 1
        assert r["difficulty"] is None
        assert r["tag_errors"]["difficulty"].startswith("cannot_judge")
        assert isinstance(r["min_neighbor_distance"], float)  # near-duplicates were marked
        assert "filter_reason" not in r
    assert summary["steps"][step_a]["not_judged"].startswith("cannot_judge")
    assert summary["steps"][step_a]["made"] == summary["steps"][step_a]["kept"]
    f = summary["filter"]
    assert f["in"] == f["kept"] + sum(f["rejected_by_rule"].values())
    assert f["in"] == summary["generated"] and f["kept"] == len(final)
    rejected = out / "filter_rejected.jsonl"
    filtered = read_records(rejected) if rejected.stat().st_size else []
    assert len(filtered) == f["in"] - f["kept"]
    for r in filtered:  # each names the rule it broke, and did break it
        assert r["filter_reason"] in ("input_quality", "sample_quality", "remove_duplicates")
        if r["filter_reason"] in rules:
            assert r[r["filter_reason"]] not in rules[r["filter_reason"]]
    gen_rejected = out / "generation_rejected.jsonl"
    for r in read_records(gen_rejected) if gen_rejected.stat().st_size else []:
        assert r["reason"] and r["step"]
    return final


def test_skills_freeform_end_to_end(tmp_path, embedded_dir):
    """The shipped freeform example on the embedded default keeps real questions with
    answers, tagged, near-duplicate marked and filtered (issue 22)."""
    from magpie.tasks import run_task

    path = small(TASKS / "skills_freeform.yaml", tmp_path, **E2E)
    summary = run_task(path, tmp_path / "out")
    out = tmp_path / "out" / "short_answers"
    assert json.loads((out / "summary.json").read_text()) == summary
    check_counts(summary)
    assert summary["generated"] == E2E["num_samples"]
    check_outputs(out, summary, TASKS / "skills_freeform.yaml")


def test_skills_grounded_end_to_end(tmp_path, embedded_dir):
    from magpie.tasks import run_task

    path = small(TASKS / "skills_grounded.yaml", tmp_path, **E2E)
    summary = run_task(path, tmp_path / "out")
    check_counts(summary)
    assert summary["steps"]["generate_context"]["made"] >= 2
    assert summary["generated"] == E2E["num_samples"]
    out = tmp_path / "out" / "reading_questions"
    final = check_outputs(out, summary, TASKS / "skills_grounded.yaml", grounded=True)
    for r in final:  # asked about the new document, which is not a seed's
        assert len(r["context"]) >= 20 and r["instruction"].startswith(r["context"])


def test_tag_transform_end_to_end(tmp_path, embedded_dir):
    from magpie.tasks import run_task

    shutil.copy(TASKS / "tag_transform_data.jsonl", tmp_path / "tag_transform_data.jsonl")
    path = small(TASKS / "tag_transform.yaml", tmp_path, max_tokens=200)
    summary = run_task(path, tmp_path / "out")
    out = tmp_path / "out" / "tag_example"
    tagged = read_records(out / "tag_example_quality_sample_quality_difficulty.jsonl")
    assert len(tagged) == 5
    for r in tagged:
        # The missions the embedded tagger can judge give a label of the vocabulary to
        # every record; difficulty, which it cannot, is null with the reason.
        assert r["input_quality"] in LABELS["input_quality"], r
        assert r["sample_quality"] in (1, 2, 3, 4, 5), r
        assert r["difficulty"] is None
        assert r["tag_errors"] == {"difficulty": r["tag_errors"]["difficulty"]}
        assert r["tag_errors"]["difficulty"].startswith("cannot_judge")
    assert tagged[2]["messages"][0]["content"] == "Give me a synonym for happy."
    f = summary["filter"]
    assert f["in"] == 5 and f["in"] == f["kept"] + sum(f["rejected_by_rule"].values())
    rules = yaml.safe_load((TASKS / "tag_transform.yaml").read_text())["filter"]
    path = out / "final_data.jsonl"
    final = read_records(path) if path.stat().st_size else []
    assert len(final) == f["kept"] >= 1, summary  # the filter keeps some and drops some
    assert f["kept"] < f["in"]
    for r in final:
        assert r["input_quality"] in rules["input_quality"]
        assert r["sample_quality"] in rules["sample_quality"]
        assert r["repeat_count"] == 0 or r["min_similar_id"] == r["id"]  # a representative
    for r in read_records(out / "filter_rejected.jsonl"):
        rule = r["filter_reason"]
        assert rule in ("input_quality", "sample_quality", "remove_duplicates")
        if rule in ("input_quality", "sample_quality"):
            assert r[rule] not in rules[rule]


def test_tag_transform_ids_follow_the_input_and_datasets_loads_the_output(tmp_path, tiny_model_dir):
    """Records of which some carry integer ids and some none: the ids made are integers
    too, so datasets/pyarrow loads final_data.jsonl (issue: `id: 101` beside `id: "t_1"`)."""
    import datasets

    from magpie.tasks import run_task, with_ids

    rows = [
        {"id": 101, "input": "What is two plus two?", "output": "Four."},
        {"input": "Name a colour.", "output": "Blue."},
        {"id": 7, "input": "Say hello in Spanish.", "output": "Hola."},
        {"input": "What is the capital of Italy?", "output": "Rome."},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {
        "task_name": "ids",
        "created_by": "me",
        "task_description": "d",
        "data_builder": "magpie_tag_transform",
        "seed_datastore": {"type": "default", "data_path": "d.jsonl"},
        "model_path": str(tiny_model_dir),
        "max_tokens": 8,
        "filter": False,
        "dedup": True,
    }
    run_task(write(tmp_path, task), tmp_path / "out")
    final = tmp_path / "out" / "ids" / "final_data.jsonl"
    ids = [r["id"] for r in read_records(final)]
    assert ids == [101, 102, 7, 103]
    loaded = datasets.load_dataset("json", data_files=str(final), split="train")
    assert loaded["id"] == ids and len(loaded) == 4
    # String ids (or none) give string ids; ids of mixed types all become strings.
    assert [r["id"] for r in with_ids([{"id": "a"}, {}], "t")] == ["a", "t_1"]
    assert [r["id"] for r in with_ids([{"id": "a"}, {"id": 3}, {}], "t")] == ["a", "3", "t_2"]
    assert [r["id"] for r in with_ids([{}, {"id": "t_0"}], "t")] == ["t_0_", "t_0"]


# ------------------------------------------------------------------ resume
class Crash(Exception):
    pass


class CountingEngine:
    """The real engine, counting its calls (`stream`, what the skills steps call). With a
    journal, it raises Crash (a kill) at the second call after the first round was
    journaled: inside round 2, after its first call's samples were journaled."""

    def __init__(self, engine, journal=None):
        self.engine, self.journal = engine, journal
        self.calls, self.before_round_two = 0, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, prompts, params, seeds=None):
        self.calls += 1
        if self.journal is not None:
            if 0 not in self.journal.done:  # the first round not finished
                self.before_round_two = self.calls
            elif self.calls == self.before_round_two + 2:
                raise Crash
        return self.engine.stream(prompts, params, seeds)


def test_skills_generation_resumes_after_a_crash(tmp_path, embedded_dir):
    """A run killed inside its second round resumes there and ends with exactly what an
    uninterrupted run makes: neither the first round nor the second round's call made
    before the kill is redone, nothing is lost or doubled."""
    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile
    from magpie.records import Journal
    from magpie.skills import SkillsBuilder

    task = yaml.safe_load((TASKS / "skills_freeform.yaml").read_text())
    task["num_questions_to_generate_per_prompt"] = 2
    task["machine_batch_size"] = 1  # round 2 shows a question kept in round 1
    engine = HFEngine(str(embedded_dir), batch_size=16)
    profile = get_profile(DEFAULT_MODEL, engine.tokenizer)

    def builder(journal=None):
        b = SkillsBuilder(engine, profile, task, seed=5, max_tokens=48)
        b.engine = CountingEngine(engine, journal)
        return b

    whole = builder()
    expected = whole.run(100, 2)
    assert whole.counts.made["validate_answer"] > 0  # rounds got as far as judged answers

    path = tmp_path / "generated.jsonl"
    crashed = builder(Journal(path, {"t": 1}))
    with pytest.raises(Crash):
        crashed.run(100, 2, crashed.engine.journal)
    journal = Journal(path, {"t": 1})
    rounds = [k for k in journal.done if isinstance(k, int)]
    assert rounds == [0]  # only the finished round's state was kept
    # and the samples of round 2's first call, made before the kill (one entry a prompt)
    made = [k for k in journal.done if isinstance(k, str) and k.startswith("1/")]
    assert made and all(k.startswith("1/generate_questions/") for k in made)

    resumed = builder()
    items = resumed.run(100, 2, journal)
    assert resumed.engine.calls == whole.engine.calls - crashed.engine.before_round_two - 1
    assert [vars(i) for i in items] == [vars(i) for i in expected]
    assert resumed.rejected == whole.rejected
    assert resumed.steps() == whole.steps()


def test_finished_generation_is_reused_by_a_rerun(tmp_path, tiny_model_dir, capsys):
    from magpie.tasks import run_task

    path = small(
        TASKS / "skills_freeform.yaml",
        tmp_path,
        model_path=str(tiny_model_dir),
        num_samples=2,
        max_iterations=1,
        num_questions_to_generate_per_prompt=2,
        max_tokens=24,
        tag=False,
    )
    first = run_task(path, tmp_path / "out")
    generated = tmp_path / "out" / "short_answers" / "generated.jsonl"
    before = (generated.read_bytes(), generated.stat().st_mtime_ns)
    assert not state_path(generated, ".journal.jsonl").exists()
    capsys.readouterr()
    again = run_task(path, tmp_path / "out")
    assert "already complete; reusing it" in capsys.readouterr().out
    assert (generated.read_bytes(), generated.stat().st_mtime_ns) == before
    assert again == first


def test_question_prompts_bootstrap_from_kept_questions(tiny_model_dir):
    """fms-dgt's self-instruct bootstrapping: with machine_batch_size, each prompt shows
    seed questions plus questions kept in earlier rounds; without it, seeds only."""
    from magpie.engines.hf import HFEngine
    from magpie.profiles import get_profile
    from magpie.skills import SkillsBuilder

    task = yaml.safe_load((TASKS / "skills_freeform.yaml").read_text())
    engine = HFEngine(str(tiny_model_dir), batch_size=2)
    profile = get_profile("tiny-random", engine.tokenizer)
    seeds = [s["question"] for s in task["seed_examples"]]
    made = ["What makes bread rise?", "Why do cats purr?", "How do magnets work?"]
    for machine in (0, 2):
        b = SkillsBuilder(engine, profile, {**task, "machine_batch_size": machine}, seed=3)
        b.machine_questions = list(made)
        chunks, chats = b.question_prompts()
        assert len(chunks) == len(chats) >= 2
        for chunk, messages in zip(chunks, chats, strict=True):
            # A few-shot conversation: each shown question is an assistant turn, asked
            # for by a user turn, and the last turn asks for one more.
            turns = [m["content"] for m in messages if m["role"] == "assistant"]
            assert [m["role"] for m in messages] == ["user", "assistant"] * len(turns) + ["user"]
            assert len(turns) == len(chunk) + machine
            assert all(any(seeds[i] in t for t in turns) for i in chunk)
            shown = [q for q in made if any(q in t for t in turns)]
            assert len(shown) == machine


def test_resumed_run_bootstraps_from_journaled_questions(tiny_model_dir, tmp_path):
    from magpie.engines.hf import HFEngine
    from magpie.profiles import get_profile
    from magpie.records import Journal
    from magpie.skills import Item, SkillsBuilder

    task = yaml.safe_load((TASKS / "skills_freeform.yaml").read_text())
    engine = HFEngine(str(tiny_model_dir), batch_size=2)
    b = SkillsBuilder(engine, get_profile("tiny-random", engine.tokenizer), task, seed=3)
    journal = Journal(tmp_path / "g.jsonl", {"t": 1})
    kept = [Item("Why do cats purr?", answer="To communicate.")]
    journal.append(0, b._state(kept, []))
    resumed = SkillsBuilder(engine, get_profile("tiny-random", engine.tokenizer), task, seed=3)
    items = resumed.run(10, 1, Journal(tmp_path / "g.jsonl", {"t": 1}))  # no round left
    assert [i.question for i in items] == resumed.machine_questions == ["Why do cats purr?"]


def test_run_task_help_prints_usage():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, str(REPO / "exp" / "run_task.py"), "--help"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "--task-paths" in r.stdout and "output_root" in r.stdout


def test_task_engine_fields_are_the_shared_engine_flags_and_the_command_line_wins(tmp_path):
    from magpie.engines import EngineOptions
    from magpie.tasks import _tag_options, task_engine_options, with_flags

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "Hi", "response": "Hello"}\n')
    path = tmp_path / "t.yaml"
    path.write_text(
        "task_name: t\ncreated_by: me\ntask_description: d\n"
        "data_builder: magpie_tag_transform\nseed_datastore:\n  data_path: d.jsonl\n"
        "engine: hf\ndtype: float32\nnum_replicas: 2\n"
    )
    task = load_task(path)
    options = task_engine_options(task)
    assert (options.engine, options.dtype, options.num_replicas) == ("hf", "float32", 2)
    assert options.batch_size == 32  # task files' default
    given = EngineOptions(dtype="float16", executor="ray")  # as from the command line
    options = _tag_options(with_flags(task, given)).engine_options
    assert (options.dtype, options.executor, options.num_replicas) == ("float16", "ray", 2)
    path.write_text(path.read_text() + "gpu_count: 2\n")
    with pytest.raises(InputError, match="field 'gpu_count' is unknown"):
        load_task(path)


def test_default_filter_rules_are_widened_only_where_they_reject_a_seed():
    from magpie.tasks import SKILLS_FILTER, fit_to_seeds

    seeds = [
        {"input_quality": "average", "sample_quality": 2},
        {"input_quality": "good", "sample_quality": 5},
    ]
    rules, fitted = fit_to_seeds(SKILLS_FILTER, seeds)
    assert rules["input_quality"] == ["average", "good", "excellent"]
    assert rules["sample_quality"] == [2, 3, 4, 5]
    assert rules["remove_duplicates"] is True
    assert "rejects 1 of 2 seed examples" in fitted["input_quality"]["why"]
    assert SKILLS_FILTER["input_quality"] == ["good", "excellent"]  # not changed in place
    # Seeds the rules keep (or untagged seeds) leave the rules as they are.
    assert fit_to_seeds(SKILLS_FILTER, [{"input_quality": "good", "sample_quality": 4}]) == (
        SKILLS_FILTER,
        {},
    )
    assert fit_to_seeds(SKILLS_FILTER, [{"input_quality": None, "sample_quality": None}]) == (
        SKILLS_FILTER,
        {},
    )


def test_question_schema_follows_the_seeds():
    import re

    from magpie.skills import question_schema

    asked = question_schema(["Why is the sky blue?", "What causes the tides?"])
    pattern = asked["properties"]["question"]["pattern"]
    assert re.fullmatch(pattern, "How does a snowflake form?")
    for bad in ("The Science of Sleep: How Sleep Affects Us", "Why?", "Why is it\nblue?"):
        assert not re.fullmatch(pattern, bad)
    told = question_schema(["Write a haiku about the sea.", "Summarise this paragraph:\nText"])
    pattern = told["properties"]["question"]["pattern"]
    assert re.fullmatch(pattern, "Write a limerick about a cat.")
    assert re.fullmatch(pattern, "Translate this sentence:\nBonjour!")
    assert not re.fullmatch(pattern, "Write a limerick about a cat")
