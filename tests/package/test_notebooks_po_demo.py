"""The notebooks run (demo.ipynb on the embedded model, data_po/process_po.ipynb), and
scripts/report.py draws its plots for a tagged dataset."""

from __future__ import annotations

import json

import nbclient  # (.ci/run installs it: a broken install fails, never skips)
import nbformat
import pytest
from conftest import REPO

from magpie.records import InputError, read_records


def execute(path, cwd, parameters: str, monkeypatch):
    """Run a notebook top to bottom with its `parameters` cell replaced."""
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters
    # One OpenMP thread: on a shared 2-core machine torch's spinning threads slow
    # generation tenfold; alone, one thread costs little at this size.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in str(o)]


@pytest.mark.slow
def test_demo_notebook_runs_on_the_embedded_model(tmp_path, monkeypatch, embedded_dir):
    work = tmp_path / "demo"
    params = (
        f"WORK = {str(work)!r}\nN_INSTRUCTIONS = 3\nINS_MAX_TOKENS = 32\n"
        "RES_MAX_TOKENS = 24\nTAG_MAX_TOKENS = 64\nSEED = 1\n"
        # Preference pairs: 2 instructions x 3 responses of 24 tokens (cut: let them pair).
        "PO_INSTRUCTIONS = 2\nPO_SAMPLES = 3\nPO_MAX_TOKENS = 24\nPO_USE_FLAGGED = True\n"
    )
    nb = execute(REPO / "demo.ipynb", REPO, params, monkeypatch)
    assert outputs(nb, "image/png"), "the plots were not drawn"
    sharegpt = read_records(work / "magpie_demo_sharegpt.jsonl")
    assert len(sharegpt) == 3 and all("conversations" in r for r in sharegpt)
    distance = read_records(work / "magpie_demo_sharegpt_distance.jsonl")
    assert all("min_neighbor_distance" in r for r in distance)
    assert all(k in distance[0] for k in ("difficulty", "input_quality", "task_category"))
    assert (work / "magpie_demo_sharegpt_distance_filtered.jsonl").exists()
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "[gen_ins]" in text and "[gen_res]" in text and "[filter]" in text
    # Preference pairs judged by the embedded model itself (magpie.judge).
    scored = read_records(work / "po_instructions_3res_armorm.json")
    assert len(scored) == 2 and all(len(r["rewards"]) == 3 for r in scored)
    assert all(r["rewards_model"] == "judge:HuggingFaceTB/SmolLM2-135M-Instruct" for r in scored)
    assert all(1 <= s["score"] <= 5 for r in scored for s in r["rewards"])
    pairs = read_records(work / "po_instructions_3res_armorm_dpo" / "train.jsonl")
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    assert "[gen_po_multi_res]" in text and "[gen_po_rewards]" in text and "CHOSEN" in text


def test_process_po_notebook_makes_pairs(tmp_path, monkeypatch):
    records = [
        {
            "uuid": f"u{i}",
            "instruction": f"Question {i}?",
            "responses": ["good answer", "bad answer", "fine answer"],
            "rewards_armorm": [{"score": s} for s in (0.2 + i, -0.1, 0.1 if i else -0.1)],
        }
        for i in range(5)
    ] + [
        {
            "uuid": "tie",
            "instruction": "Tie?",
            "responses": ["a", "b"],
            "rewards_armorm": [{"score": 0.1}, {"score": 0.1}],
        }
    ]
    src = tmp_path / "example_instructions_5res_armorm.json"
    src.write_text(json.dumps(records))
    params = (
        f"INPUT = {str(src)!r}\nMIN_MARGIN = 0.0\nTEST_SIZE = 0.2\nSEED = 42\nPUSH_TO_HUB = None\n"
    )
    nb = execute(REPO / "data_po" / "process_po.ipynb", REPO / "data_po", params, monkeypatch)
    out = tmp_path / "example_instructions_5res_armorm_dpo"
    train, test = read_records(out / "train.jsonl"), read_records(out / "test.jsonl")
    assert (len(train), len(test)) == (4, 1)
    assert train[0]["chosen"][0]["content"] == "good answer"
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "tie 1" in text and "PROMPT:" in text


def test_report_script_writes_pngs_next_to_the_dataset(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("report", REPO / "scripts" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)

    records = [
        {
            "conversation_id": f"m_{i}",
            "conversations": [
                {"from": "human", "value": f"q{i}"},
                {"from": "gpt", "value": "x" * (10 * i)},
            ],
            "task_category": ["Math", "Coding & Debugging", "Others", "nonsense"][i % 4],
            "difficulty": ["easy", "hard", None][i % 3],
            "input_quality": "good",
            "min_neighbor_distance": 0.01 * i,
        }
        for i in range(12)
    ]
    src = tmp_path / "tagged_distance.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    report.main(str(src), pngs=True)
    assert (tmp_path / "tagged_distance_report.html").is_file()  # the page: tests/report
    names = {p.name for p in tmp_path.iterdir()}
    for plot in ("task_category", "difficulty", "input_quality", "min_neighbor_distance"):
        assert f"tagged_distance_{plot}.png" in names
    assert "tagged_distance_response_length.png" in names
    assert "tagged_distance_report.md" in names
    printed = capsys.readouterr().out
    assert "records: 12" in printed and "5 of 12 records have a neighbour closer" in printed
    from magpie.labels import DIFFICULTY, TASK_CATEGORIES
    from magpie.report import label_counts

    counts = label_counts(records, "difficulty", DIFFICULTY)
    assert counts == {
        "very easy": 0, "easy": 4, "medium": 0, "hard": 4, "very hard": 0, "(untagged)": 4
    }  # fmt: skip
    # "nonsense" is not a task category: counted as untagged, not dropped.
    assert label_counts(records, "task_category", TASK_CATEGORIES)["(untagged)"] == 3

    with pytest.raises(InputError, match="no such"):
        report.main(str(tmp_path / "missing.json"))
