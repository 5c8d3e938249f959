"""Preference data: reward scores for sampled responses, then chosen/rejected pairs.

The original's path is gen_po_multi_res.py (N responses, see magpie.responses with
`num_samples`) → gen_po_rewards.py (ArmoRM score per response) → process_po.ipynb
(chosen = best, rejected = worst). Kept: its file names (`<stem>_armorm.json`) and fields
(`rewards_armorm` = [{"score": s}] aligned with `responses`). Fixed (its §9 items 26, 36):

- Scoring is batched by length (magpie.tagging.reward.RewardScorer), any single-logit
  sequence-classification reward model works, and a custom-head model such as ArmoRM
  loads only with an explicit trust_remote_code. The scores go to `rewards_armorm` only
  when ArmoRM made them (the original's name for its model's scores); any other model's
  go to `rewards`. `rewards_model` names the scorer either way.
- No reward model at hand (issue 16): the scorer "judge" is a chat model (by default the
  embedded SmolLM2-135M-Instruct) whose score is the expected value of its 1-5 rating
  over the rating tokens' probabilities (`magpie.judge`); `rewards_model` is then
  "judge:<judge model>" and the scores go to `rewards`.
- Pairs need a real preference: ties and margins below `min_margin` are dropped and
  counted, as are records with fewer than two usable responses (flagged empty or
  unfinished responses are not candidates unless asked) and records whose candidates all
  say the same (identical after whitespace normalisation: chosen and rejected always
  differ). The train/test split is seeded.
- Pairs come in the explicit-prompt conversational form TRL's DPOTrainer reads:
  `prompt` = [user turn], `chosen` / `rejected` = [assistant turn] (the original stored
  whole conversations under chosen/rejected; TRL would repeat the prompt with those),
  followed by every column of the input record.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from magpie.executor import Made, Step
from magpie.judge import is_judge, judge_model_of, load_judge
from magpie.records import InputError, Journal, Spool, iter_records, where, write_records
from magpie.stage import Summary
from magpie.tagging.inputs import Conversation

REWARD_FIELD = "rewards_armorm"  # the original's field: ArmoRM's scores
OTHER_REWARD_FIELD = "rewards"  # any other reward model's scores
REWARD_MODEL_FIELD = "rewards_model"


def reward_field_for(reward_model: str) -> str:
    """`rewards_armorm` for ArmoRM (as the original wrote it), else `rewards`."""
    return REWARD_FIELD if "armorm" in reward_model.lower() else OTHER_REWARD_FIELD


def detect_reward_field(records: Iterable[dict]) -> str:
    """The scores' field of scored records: `rewards_armorm` or `rewards`, whichever the
    first record with either carries (read no further than that one)."""
    for record in records:
        for field in (REWARD_FIELD, OTHER_REWARD_FIELD):
            if field in record:
                return field
    return REWARD_FIELD


def reward_file_name(input_file: str | os.PathLike) -> Path:
    """<input stem>_armorm.json next to the input, as the original names it."""
    p = Path(input_file)
    return p.with_name(p.stem + "_armorm.json")


def pairs_dir_name(input_file: str | os.PathLike) -> Path:
    """<input stem>_dpo/ next to the input: train.jsonl and test.jsonl, which
    `datasets.load_dataset(folder)` reads as the train and test splits."""
    p = Path(input_file)
    return p.with_name(p.stem + "_dpo")


def _responses(record: dict, path, index: int) -> list[str] | None:
    """The record's responses (None for a record the sampling stage skipped)."""
    responses = record.get("responses")
    if responses is None:
        if "responses" not in record:
            raise InputError(f"{where(path, index)}: field 'responses' is missing")
        return None
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise InputError(f"{where(path, index)}: field 'responses' is not a list of strings")
    if not isinstance(record.get("instruction"), str):
        raise InputError(f"{where(path, index)}: field 'instruction' is missing or not a string")
    return responses


def check_responses(input_file: str | os.PathLike) -> int:
    """Validate every record's responses (see `_responses`) in one streaming pass, so bad
    input fails before any model loads; returns how many records there are."""
    count = 0
    for count, record in enumerate(iter_records(input_file), 1):
        _responses(record, input_file, count - 1)
    return count


# ---------------------------------------------------------------------------------------
# Rewards


class RewardJob(Step):
    """One scoring run: input validated (one streaming pass) and journal opened, before any
    model loads. Items are (index, record) pairs read from the input as the executor asks
    for them (the step holds no records, also when shipped to Ray replicas); the model is a `magpie.tagging.reward.RewardScorer` or a
    `magpie.judge.JudgeScorer` (the same `fit`, `scores` and `model_path`)."""

    stage = "gen_po_rewards"
    chunk_records = 256  # records per length-sorted pass of the scorer

    def __init__(
        self,
        input_file: str | os.PathLike,
        output_path: str | os.PathLike | None = None,
        *,
        reward_model: str,
        max_length: int = 4096,
        dtype: str = "bfloat16",
    ):
        self.input_file = input_file
        self.count = check_responses(input_file)
        self.field = reward_field_for(reward_model)
        self.journal = Journal(
            output_path or reward_file_name(input_file),
            {
                "stage": "gen_po_rewards",
                "input": str(Path(input_file).resolve()),
                "records": self.count,
                "reward_model": reward_model,
                "max_length": max_length,
                "dtype": dtype,
            },
        )

    def todo(self) -> Iterator[tuple[int, dict]]:
        return self.journal.pending(self.input_file)

    def progress(self) -> tuple[int, int]:
        return self.count, len(self.journal.done)

    def make(self, scorer, items: list[int]) -> Iterator[Made]:
        """Score every response of these records, `chunk_records` records at a time: each
        chunk is one length-sorted pass. Records without responses are marked skipped."""

        size = max(1, self.chunk_records)
        records, responses, todo = {}, {}, []
        for i, record in items:
            responses[i] = _responses(record, self.input_file, i)
            if responses[i] is None:
                skipped = {self.field: None, REWARD_MODEL_FIELD: None, "rewards_flag": "skipped"}
                yield i, {**record, **skipped}, 0
            else:
                records[i] = record
                todo.append(i)
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            pairs = [(i, j) for i in chunk for j in range(len(responses[i]))]
            texts = [(records[i]["instruction"], responses[i][j]) for i, j in pairs]
            fitted = [scorer.fit(Conversation([("user", q), ("assistant", a)])) for q, a in texts]
            encoded = [ids for ids, _ in fitted]
            cut = {pairs[k][0] for k, (_, truncated) in enumerate(fitted) if truncated}
            scores: dict[int, list] = {i: [None] * len(responses[i]) for i in chunk}
            tokens = dict.fromkeys(chunk, 0)
            for k, value in scorer.scores(encoded):
                i, j = pairs[k]
                scores[i][j] = {"score": value if math.isfinite(value) else None}
                tokens[i] += len(encoded[k])  # what the scorer counts: unpadded tokens
            for i in chunk:
                record = {
                    **records[i],
                    self.field: scores[i],
                    REWARD_MODEL_FIELD: scorer.model_path,
                    "rewards_truncated": i in cut,
                }
                yield i, record, tokens[i]

    def summary(self) -> Summary:
        return Summary(self.stage, self.count)

    def finish(self, summary: Summary) -> Summary:
        """Write the scored records, streamed from the journal; flags count skipped
        records, records with a truncated response and scores that were not finite."""

        def counted() -> Iterator[dict]:
            for r in self.journal.in_order(self.count):
                if r.get("rewards_flag"):
                    summary.flags[r["rewards_flag"]] += 1
                if r.get("rewards_truncated"):
                    summary.flags["truncated"] += 1
                for s in r.get(self.field) or ():
                    if s is not None and s["score"] is None:
                        summary.flags["non_finite_score"] += 1
                yield r

        self.journal.finish(counted())
        summary.records_out = self.count
        return summary


def load_scorer(model_path: str, **options):
    """The reward model's scorer (a picklable loader for executors:
    functools.partial(load_scorer, path, dtype=..., ...)). "judge" (or "judge:<model>")
    is a chat model rating each response (`magpie.judge.load_judge`, with its options:
    judge_model_path, engine_options, max_length)."""

    if is_judge(model_path):
        path = judge_model_of(model_path, options.pop("judge_model_path", None))
        return load_judge(path, **options)
    from magpie.tagging.reward import RewardScorer

    return RewardScorer(model_path, **options)


# ---------------------------------------------------------------------------------------
# Pairs


def _scores(record: dict, field: str, count: int, path, index: int) -> list[float | None]:
    """The record's scores as floats (None where a response has none)."""
    rewards = record.get(field)
    if not isinstance(rewards, list):
        problem = (
            "missing (score it with gen_po_rewards.py)" if field not in record else "not a list"
        )
        raise InputError(f"{where(path, index)}: field '{field}' is {problem}")
    if len(rewards) != count:
        raise InputError(
            f"{where(path, index)}: '{field}' has {len(rewards)} scores for {count} responses"
        )
    out: list[float | None] = []
    for value in rewards:
        if isinstance(value, dict):
            value = value.get("score")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"{where(path, index)}: '{field}' holds a non-numeric score {value!r}")
        out.append(None if value is None or not math.isfinite(value) else float(value))
    return out


def same_text_key(text: str) -> str:
    """A response's text with whitespace normalised: two responses with the same key are
    the same answer and never make a pair."""
    return " ".join(text.split())


def choose_pair(
    scores: list[float | None],
    usable: list[bool] | None = None,
    min_margin: float = 0.0,
    texts: list[str] | None = None,
) -> tuple[int, int] | str:
    """(chosen index, rejected index), or why there is no pair.

    Chosen is the first highest score, rejected the first lowest, among usable responses
    with a score whose text (`texts`, whitespace normalised) differs from the chosen one's.
    A pair needs a margin above zero and at least `min_margin`: "too_few_responses"
    (fewer than two candidates), "identical_texts" (every candidate says the same), "tie"
    (all candidates score the same) or "below_margin".
    """
    candidates = [
        j for j, s in enumerate(scores) if s is not None and (usable is None or usable[j])
    ]
    if len(candidates) < 2:
        return "too_few_responses"
    best = max(candidates, key=lambda j: (scores[j], -j))
    if texts is not None:
        key = same_text_key(texts[best])
        candidates = [j for j in candidates if same_text_key(texts[j]) != key]
        if not candidates:
            return "identical_texts"
    worst = min(candidates, key=lambda j: (scores[j], j))
    margin = scores[best] - scores[worst]
    if margin <= 0:
        return "tie"
    if margin < min_margin:
        return "below_margin"
    return best, worst


def pair_record(record: dict, chosen: int, rejected: int, scores: list) -> dict:
    """TRL's explicit-prompt conversational preference row, then the input's columns."""
    responses = record["responses"]
    return {
        "prompt": [{"role": "user", "content": record["instruction"]}],
        "chosen": [{"role": "assistant", "content": responses[chosen]}],
        "rejected": [{"role": "assistant", "content": responses[rejected]}],
        "chosen_score": scores[chosen],
        "rejected_score": scores[rejected],
        **{k: v for k, v in record.items() if k not in ("prompt", "chosen", "rejected")},
    }


def iter_pairs(
    records: Iterable[dict],
    path: str | os.PathLike = "<records>",
    *,
    min_margin: float = 0.0,
    reward_field: str = REWARD_FIELD,
    use_flagged: bool = False,
    dropped: Counter | None = None,
) -> Iterator[dict]:
    """Preference pairs from scored records, yielded as the records stream past; records
    that give none are counted by reason in `dropped`."""
    dropped = Counter() if dropped is None else dropped
    for index, record in enumerate(records):
        responses = _responses(record, path, index)
        if responses is None:
            dropped["no_responses"] += 1  # skipped when sampling
            continue
        if reward_field in record and record[reward_field] is None:
            dropped["not_scored"] += 1
            continue
        scores = _scores(record, reward_field, len(responses), path, index)
        flags = record.get("response_flags")
        usable = [
            bool(r.strip())
            and (use_flagged or not isinstance(flags, list) or j >= len(flags) or not flags[j])
            for j, r in enumerate(responses)
        ]
        choice = choose_pair(scores, usable, min_margin, responses)
        if isinstance(choice, str):
            dropped[choice] += 1
        else:
            yield pair_record(record, *choice, scores)


def make_pairs(
    records: Iterable[dict],
    path: str | os.PathLike = "<records>",
    *,
    min_margin: float = 0.0,
    reward_field: str = REWARD_FIELD,
    use_flagged: bool = False,
) -> tuple[list[dict], Counter]:
    """Preference pairs from scored records (a list), and the count of records dropped by
    reason."""
    dropped: Counter = Counter()
    pairs = list(
        iter_pairs(
            records,
            path,
            min_margin=min_margin,
            reward_field=reward_field,
            use_flagged=use_flagged,
            dropped=dropped,
        )
    )
    return pairs, dropped


def split_order(n: int, test_size: float = 0.02, seed: int = 42) -> tuple[array, array]:
    """(train, test) positions of `n` pairs after a seeded shuffle. `test_size` below 1 is
    a share (rounded up, as `datasets` does, and never all the rows), 1 or more a count."""
    n_test = math.ceil(test_size * n) if test_size < 1 else int(test_size)
    n_test = max(0, min(n_test, n - 1))
    order = array("q", range(n))  # 8 bytes a pair; shuffled with the draws of a list
    random.Random(seed).shuffle(order)
    return order[n_test:], order[:n_test]


def split_pairs(pairs: list[dict], test_size: float = 0.02, seed: int = 42):
    """`pairs` shuffled into (train, test) by `split_order`."""
    train, test = split_order(len(pairs), test_size, seed)
    return [pairs[i] for i in train], [pairs[i] for i in test]


def write_split(out: Path, train: Iterable[dict], test: Iterable[dict] | None) -> None:
    """train.jsonl and test.jsonl (none when `test` is None or an empty list) as one unit:
    both are written (streamed from the iterables) into a new folder that then replaces
    `out`, so a crash never leaves one split of this run beside one of another
    (overlapping rows) or a half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_records(new / "train.jsonl", train)
        if test:
            write_records(new / "test.jsonl", test)
        os.chmod(new, 0o777 & ~_umask())
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            os.replace(out, old)
        os.replace(new, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build_pairs(
    input_file: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    min_margin: float = 0.0,
    test_size: float = 0.02,
    seed: int = 42,
    reward_field: str | None = None,
    use_flagged: bool = False,
) -> dict:
    """Scored records (gen_po_rewards' output) → <output_dir>/train.jsonl and test.jsonl;
    returns the counts that the summary line shows. The input is streamed once (twice
    when the reward field is found from it); the pairs wait in a `magpie.records.Spool` for the
    shuffled split, so memory holds 8 bytes per pair, not the pairs."""
    summary = Summary("gen_po_pairs")
    if min_margin < 0:
        raise InputError(f"--min_margin must be at least 0, not {min_margin}")
    if test_size < 0:
        raise InputError(f"--test_size must be at least 0, not {test_size}")
    reward_field = reward_field or detect_reward_field(iter_records(input_file))
    out = Path(output_dir) if output_dir else pairs_dir_name(input_file)
    dropped: Counter = Counter()
    seen = [0]  # records read

    def records() -> Iterator[dict]:
        for seen[0], record in enumerate(iter_records(input_file), 1):
            yield record

    with Spool(out.parent if out.parent.is_dir() else None) as spill:
        for pair in iter_pairs(
            records(),
            input_file,
            min_margin=min_margin,
            reward_field=reward_field,
            use_flagged=use_flagged,
            dropped=dropped,
        ):
            spill.add(pair)
        summary.records_in = seen[0]
        if not len(spill):
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
            raise InputError(f"{input_file}: no record gives a preference pair ({reasons})")
        train, test = split_order(len(spill), test_size, seed)
        write_split(out, spill.read(train), spill.read(test) if test else None)
    summary.records_out = len(train) + len(test)
    summary.flags.update(dropped)
    print(summary.line())
    print(f"[gen_po_pairs] train {len(train)}, test {len(test)}; wrote {out}")
    return {
        "output_dir": str(out),
        "records": seen[0],
        "pairs": len(train) + len(test),
        "train": len(train),
        "test": len(test),
        "dropped": dict(dropped),
    }
