"""Labels read from the label tokens' probabilities, with the tagger's confidence (issue 16).

Why: constrained decoding picks a label's first token by argmax, so a small tagger's
favourite label wins whatever the input (the embedded model called 26 of 32 requests
"very poor" and 23 "very hard"). Here the probability of every label of the vocabulary
is read as the model's next tokens (`Engine.next_token_probs`: one forward pass per batch
on hf, `logprob_token_ids` on vLLM, logprobs on servers), the distribution is calibrated,
and the stored label is its most probable one. Records keep that label's probability
(`<field>_confidence`) and, for the ordinal labels, the expected rank in 1-5 under the
distribution (`<field>_score`), which orders records whose labels tie.

Prompts: difficulty, input quality and task category are asked as a few-shot completion
(`magpie.tagging.prompts.FEW_SHOT`: labelled examples in several languages, then the
request and "Label:"), which a small model follows far better than a zero-shot rubric
(bench/bench_tag_trust.py); sample quality uses the judge's rubric (`magpie.judge`). A
label's probability is that of its token path: where labels share their first tokens
(" very easy", " very hard") the shared prefix gets a second pass; once a path is the
label's alone its later tokens are taken as given (`magpie.tokens`).

Calibration (batch calibration, Zhou et al. 2024, "Batch Calibration: Rethinking
Calibration for In-Context Learning and Prompt Engineering", arXiv:2309.17249): each
label's probability is divided by the tagger's mean probability for it over a reference
set (its prior: what it answers whatever the input) and renormalised. The priors ship per
tagger model in magpie/configs/tagging/calibration.json, measured on the hand-labelled set
tests/fixtures/tagging/hand_labelled.jsonl (`python bench/bench_tag_trust.py
--write_calibration`); a model without an entry is read uncalibrated.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from magpie.conversation import Conversation
from magpie.judge import JudgeScorer
from magpie.prompt_text import as_data, encode
from magpie.records import InputError
from magpie.resources import TAG_CALIBRATION
from magpie.tagging.prompts import few_shot_prompt
from magpie.tagging.schemas import DIFFICULTY, QUALITY, SCORES, TASK_CATEGORIES
from magpie.tokens import path_probs, token_paths

log = logging.getLogger("magpie")

# The label field each scored mission writes, and its vocabulary in rank order.
LABELS: dict[str, tuple[str, tuple]] = {
    "difficulty": ("difficulty", DIFFICULTY),
    "quality": ("input_quality", QUALITY),
    "sample_quality": ("sample_quality", SCORES),
    "classification": ("task_category", TASK_CATEGORIES),
}
ORDINAL = ("difficulty", "quality", "sample_quality")  # labels with a rank: get a score
ANSWER = "Label:"  # the few-shot prompts end with this; the label follows after a space


def calibration_for(model_name: str) -> dict[str, list[float]] | None:
    """{mission: prior per label} shipped for a tagger model, or None (uncalibrated)."""
    path = TAG_CALIBRATION
    if not path.exists():
        return None
    entry = json.loads(path.read_text(encoding="utf-8")).get("models", {}).get(model_name)
    return entry["priors"] if entry else None


def calibrate(probs: Sequence[float], prior: Sequence[float] | None) -> list[float] | None:
    """`probs` divided by `prior` (when given) and renormalised; None when they carry no
    probability (NaN or all zero: the prompt could not be read)."""
    if prior is not None:
        probs = [p / q for p, q in zip(probs, prior, strict=True)]
    total = math.fsum(probs)
    if not math.isfinite(total) or total <= 0:
        return None
    return [p / total for p in probs]


@dataclass(frozen=True)
class Scored:
    """A label read from a distribution: the label, its probability and, for ordinal
    vocabularies, the expected rank 1..len(vocabulary)."""

    label: object
    confidence: float
    score: float | None


def read_label(mission: str, dist: Sequence[float]) -> Scored:
    """The most probable label of `dist` (a calibrated distribution over the mission's
    vocabulary, in vocabulary order); ties go to the first label."""
    vocab = LABELS[mission][1]
    best = max(range(len(vocab)), key=lambda k: dist[k])
    score = math.fsum((k + 1) * p for k, p in enumerate(dist)) if mission in ORDINAL else None
    return Scored(vocab[best], dist[best], score)


class LabelScorer:
    """Reads a mission's label distribution for conversations on one engine (see the
    module docstring). `priors`: {mission: prior per label} or None (uncalibrated)."""

    def __init__(self, engine, model_name: str, priors: dict | None = None):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.model_name = model_name
        self.priors = priors or {}
        self._paths: dict[str, tuple[str, list[list[int]]]] = {}
        self._judge = None
        self._warned: set[str] = set()

    def _encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def prompts(self, mission: str, convs: Sequence[Conversation]) -> list[list[int]]:
        """Token ids of each conversation's scoring prompt, opened for the label."""
        if mission == "sample_quality":
            judge = self._judge_scorer()
            return [judge.fit(conv)[0] for conv in convs]
        opening = self._label_paths(mission)[0]
        # The few-shot prompt quotes the record: all of it is text (prompt_text).
        return [self._encode(as_data(few_shot_prompt(mission, conv)) + opening) for conv in convs]

    def _label_paths(self, mission: str) -> tuple[str, list[list[int]]]:
        """(opening, label token paths) after a few-shot prompt, found once per mission."""
        if mission not in self._paths:
            words = [str(w) for w in LABELS[mission][1]]
            self._paths[mission] = token_paths(self.tokenizer, few_shot_prompt(mission, ""), words)
        return self._paths[mission]

    def _judge_scorer(self):
        if self._judge is None:
            self._judge = JudgeScorer(self.engine, self.model_name)
        return self._judge

    def paths(self, mission: str) -> list[list[int]]:
        if mission == "sample_quality":
            return [[t] for t in self._judge_scorer().rating_ids]
        return self._label_paths(mission)[1]

    def raw(self, mission: str, convs: Sequence[Conversation]) -> list[list[float]]:
        """Uncalibrated label probabilities (vocabulary order) per conversation."""
        prompts = self.prompts(mission, convs)
        return path_probs(self.engine, prompts, self.paths(mission))

    def score(self, mission: str, convs: Sequence[Conversation]) -> list[Scored | None]:
        """The calibrated label of each conversation, None where none could be read. A
        model or server that cannot give the labels' probabilities (labels its tokenizer
        cannot tell apart, a server without logprobs) gets Nones and one warning: its
        records keep the generated label, without a confidence."""
        if mission not in LABELS or not hasattr(self.engine, "next_token_probs"):
            return [None] * len(convs)  # safety: a verdict and a category, not one label
        prior = self.priors.get(mission)
        try:
            rows = self.raw(mission, convs)
        except (InputError, ValueError) as e:
            if mission not in self._warned:
                self._warned.add(mission)
                log.warning("[unitag %s] labels as generated, no confidence: %s", mission, e)
            return [None] * len(convs)
        out = []
        for probs in rows:
            dist = calibrate(probs, prior)
            out.append(read_label(mission, dist) if dist else None)
        return out


def with_scored(mission: str, fields: dict, scored: Scored | None) -> dict:
    """A mission's fields with the label read from probabilities put in place of the
    generated one, and its confidence and score beside it (null without one). Missions
    without a scored label (safety) are returned as they are."""
    if mission not in LABELS:
        return fields
    name = LABELS[mission][0]
    out = {**fields, f"{name}_confidence": None}
    if mission in ORDINAL:
        out[f"{name}_score"] = None
    if scored is None:
        return out
    out[name] = scored.label
    out[f"{name}_confidence"] = round(scored.confidence, 4)
    if mission in ORDINAL:
        out[f"{name}_score"] = round(scored.score, 4)
    if mission == "classification":
        others = out.get("other_task_category") or []
        out["other_task_category"] = [o for o in others if o != scored.label]
    return out
