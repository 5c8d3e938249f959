"""Labels read from the label tokens' probabilities (magpie.tagging.scoring): the
arithmetic by hand, the probabilities against a plain transformers forward pass, and the
embedded tagger on the hand-labelled set (tests/fixtures/tagging/hand_labelled.jsonl)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FIXTURES

from magpie.conversation import conversation_of
from magpie.engines import EngineOptions
from magpie.engines.hf import HFEngine
from magpie.models import DEFAULT_MODEL
from magpie.records import read_records, write_records
from magpie.tagging.job import TagOptions, run
from magpie.tagging.prompts import few_shot_prompt
from magpie.tagging.schemas import QUALITY
from magpie.tagging.scoring import LabelScorer, calibrate, calibration_for, read_label
from magpie.tokens import branch_points, token_paths


def test_calibration_divides_by_the_prior_and_renormalises():
    # 0.5/0.5 = 1, 0.3/0.25 = 1.2, 0.2/0.25 = 0.8 -> / 3.0
    assert calibrate([0.5, 0.3, 0.2], [0.5, 0.25, 0.25]) == pytest.approx([1 / 3, 0.4, 0.8 / 3])
    assert calibrate([0.2, 0.2], None) == pytest.approx([0.5, 0.5])
    assert calibrate([math.nan, 0.1], None) is None
    assert calibrate([0.0, 0.0], None) is None


def test_a_label_is_the_most_probable_and_its_score_the_expected_rank():
    got = read_label("quality", [0.1, 0.2, 0.3, 0.4, 0.0])
    assert got.label == "good" and got.confidence == pytest.approx(0.4)
    assert got.score == pytest.approx(0.1 + 0.4 + 0.9 + 1.6)  # sum k * p_k = 3.0
    scored = read_label("classification", [0.0] * 5 + [0.9] + [0.1 / 6] * 6)
    assert scored.label == "Math" and scored.score is None


def test_labels_sharing_a_first_token_get_a_second_pass(smol_tokenizer):
    """ "very easy" and "very hard" start with the same token: one pass tells " very"
    from "easy", "medium", "hard"; a second, after " very", tells easy from hard."""
    head = few_shot_prompt("difficulty", "")
    labels = ["very easy", "easy", "medium", "hard", "very hard"]
    opening, paths = token_paths(smol_tokenizer, head, labels)
    tokens = {w: smol_tokenizer.encode(" " + w, add_special_tokens=False) for w in labels}
    assert opening == "" and paths == [tokens[w] for w in labels]
    very = tokens["very easy"][0]
    points = branch_points(paths)
    assert [p for p, _ in points] == [(), (very,)]
    assert sorted(points[0][1].values()) == [[0, 4], [1], [2], [3]]
    assert points[1][1] == {tokens["very easy"][1]: [0], tokens["very hard"][1]: [4]}


@pytest.mark.slow
def test_label_probabilities_equal_a_plain_forward_pass(embedded_dir):
    """P("very hard") = P(" very") * P(" hard" | " very"), P("medium") = P(" medium"),
    from transformers itself, one request at a time, against the scorer's batch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32).eval()
    engine = HFEngine(str(embedded_dir), dtype="float32", model=model, tokenizer=tok)
    scorer = LabelScorer(engine, DEFAULT_MODEL)
    requests = ["Prove Fermat's last theorem.", "What is 2 + 2?", "Écris un poème."]
    convs = [conversation_of({"instruction": q})[0] for q in requests]
    got = scorer.raw("difficulty", convs)

    def next_probs(text: str) -> torch.Tensor:
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            return torch.softmax(model(ids).logits[0, -1].float(), -1)

    def first(word: str) -> int:
        return tok.encode(" " + word, add_special_tokens=False)[0]

    for q, row in zip(requests, got, strict=True):
        prompt = few_shot_prompt("difficulty", q)
        p, after_very = next_probs(prompt), next_probs(prompt + " very")
        expected = [
            p[first("very")] * after_very[first("easy")],
            p[first("easy")],
            p[first("medium")],
            p[first("hard")],
            p[first("very")] * after_very[first("hard")],
        ]
        assert row == pytest.approx([float(x) for x in expected], abs=1e-5)


@pytest.mark.slow
def test_embedded_tagger_ranks_gibberish_below_every_well_formed_request(embedded_dir):
    """The hand-labelled set: every gibberish request gets "very poor" and an input
    quality score below every well-formed request's; a share of the well-formed ones is
    "good" or better (what the default filter keeps), none of the gibberish."""
    rows = read_records(FIXTURES / "tagging" / "hand_labelled.jsonl")
    engine = HFEngine(str(embedded_dir), dtype="float32")
    scorer = LabelScorer(engine, DEFAULT_MODEL, calibration_for(DEFAULT_MODEL))
    convs = [conversation_of({"instruction": r["instruction"]})[0] for r in rows]
    scored = dict(zip((r["id"] for r in rows), scorer.score("quality", convs), strict=True))
    gibberish = [r["id"] for r in rows if r["label_quality"] == "gibberish"]
    formed = [r["id"] for r in rows if r["label_quality"] == "good"]
    assert len(gibberish) >= 5 and len(formed) >= 30
    assert all(scored[i].label == "very poor" for i in gibberish)
    assert max(scored[i].score for i in gibberish) < min(scored[i].score for i in formed)
    kept = [i for i in formed if scored[i].label in ("good", "excellent")]
    assert len(kept) >= len(formed) // 4
    for s in scored.values():
        assert s.label in QUALITY and 0 < s.confidence <= 1 and 1 <= s.score <= 5


@pytest.mark.slow
def test_quality_mission_stores_the_scored_label_its_confidence_and_score(tmp_path):
    """A full unitag run on the embedded model: the stored label is the one the
    confidence belongs to (the largest probability: at least 1/5), the explanation is the
    model's text, and gibberish scores below the ordinary requests. Constrained decoding
    needs xgrammar, a dependency of the package: imported, so a broken install fails."""
    import xgrammar  # noqa: F401

    questions = [
        "How do I reverse a list in Python?",
        "Write a short poem about the sea.",
        "Quelle est la capitale de l'Italie ?",
        "qwpo zxnm lkjh asdf",
    ]
    src = tmp_path / "x.json"
    write_records(src, [{"instruction": q, "response": "Sure."} for q in questions])
    opts = TagOptions(seed=0, max_tokens=96, engine_options=EngineOptions(engine="hf"))
    (out,) = run("quality", src, opts)
    tagged = read_records(out)
    for r in tagged:
        assert r["input_quality"] in QUALITY and r["quality_generator"] == DEFAULT_MODEL
        assert 0.2 <= r["input_quality_confidence"] <= 1
        assert 1 <= r["input_quality_score"] <= 5
        assert r["quality_explanation"].strip()
    *ordinary, gibberish = tagged
    assert gibberish["input_quality"] == "very poor"
    assert gibberish["input_quality_score"] < min(r["input_quality_score"] for r in ordinary)


@pytest.mark.parametrize("mission", ["safety", "difficulty", "classification"])
def test_embedded_tagger_stores_null_with_its_reason_where_it_cannot_judge(
    tmp_path, monkeypatch, mission
):
    """Missions the embedded SmolLM2-135M cannot be trusted with on the hand-labelled set
    (bench/bench_tag_trust.py): every record gets null labels and the reason, none a
    confident wrong label, and no model is loaded for them."""
    from magpie.tagging import job as tag_job
    from magpie.tagging.schemas import FIELDS

    rows = read_records(FIXTURES / "tagging" / "hand_labelled.jsonl")
    assert len(rows) >= 40 and len({r["label_language"] for r in rows}) >= 5
    src = tmp_path / "set.jsonl"
    write_records(src, rows)

    def no_load(*args):
        raise AssertionError("the tagger was loaded")

    monkeypatch.setattr(tag_job, "load_llm_tagger", no_load)
    (out,) = run(mission, src, TagOptions(engine_options=EngineOptions(engine="hf")))
    tagged = read_records(out)
    assert [r["instruction"] for r in tagged] == [r["instruction"] for r in rows]
    if mission == "safety":  # target: benign requests tagged unsafe at most 10%
        benign = [r for r in tagged if r["label_safety"] == "safe"]
        assert len(benign) >= 30
        unsafe = [r for r in benign if r["llama_guard_2"] not in (None, "safe")]
        assert len(unsafe) <= 0.1 * len(benign), unsafe
    assert all(r[f] is None for r in tagged for f in FIELDS[mission])
    assert all(r["tag_errors"][mission].startswith("cannot_judge: the embedded") for r in tagged)


class DigitsInTwoTokens:
    """A tokenizer of characters that writes every digit as two tokens (as some
    tokenizers split numbers), so no rating is one token."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out = []
        for c in text:
            out += [ord(c), ord(c)] if c.isdigit() else [ord(c)]
        return out


def test_the_judges_ratings_must_be_single_tokens(smol_tokenizer):
    from magpie.judge import ANSWER_PREFIX, rating_tokens
    from magpie.records import InputError

    opening, ids = rating_tokens(smol_tokenizer, "Rate it.\n")
    # SmolLM2 writes " 4" as " " and "4": the answer opens with the space.
    assert opening == ANSWER_PREFIX + " "
    assert ids == [smol_tokenizer.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    with pytest.raises(InputError, match="single tokens after 'Rating:'"):
        rating_tokens(DigitsInTwoTokens(), "Rate it.\n")
    # The same words as labels of any length are fine: two tokens each, told apart.
    _, paths = token_paths(DigitsInTwoTokens(), "x:", ["1", "2"])
    assert paths == [[ord("1")] * 2, [ord("2")] * 2]
