"""Degenerate repetition: a row that has started to loop is stopped at once, on every engine.

Small models decoding greedily (SmolLM2-135M with the original's res_temp 0) often repeat
a sentence or a list item until max_tokens: every token after the loop starts is waste,
and the text is unusable. The rule is vLLM's own repetition detection
(`SamplingParams.repetition_detection`, vllm/v1/core/sched/utils.py
`check_sequence_repetition`), so that every engine stops the same rows: after each new
token, the generated tokens end with a block of p tokens (MIN_PATTERN <= p <= MAX_PATTERN)
repeated MIN_COUNT times back to back. A shorter block also repeats as a multiple of
itself in that range, so one token repeated 4 * MIN_PATTERN times is caught too.

- hf: checked in the decoding loop (`repeats`); the row ends with finish_reason
  "repetitive".
- vllm (offline, or a `vllm serve` server): the request carries the same parameters
  (`vllm_params`) and vLLM's scheduler ends the row (its finish reason "repetition").
- other servers (llama.cpp...): the completion is checked when it returns (the tokens
  were spent, but the row is flagged the same way).

Stages flag such a row `repetitive` (response_flag, instruction_flag, a conversation's
stop reason) and the default filter drops it. A list whose items differ only in their
numbers ("6. X\\n7. X\\n") is not caught here: it runs to max_tokens and is "unfinished".
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_PATTERN = 8  # tokens in the repeated block, at least (shorter blocks: see above)
MAX_PATTERN = 64  # tokens in the repeated block, at most
MIN_COUNT = 4  # copies back to back
WINDOW = MAX_PATTERN * MIN_COUNT  # the most tokens a check reads


def repeats(tokens: Sequence[int]) -> bool:
    """Whether `tokens` end with a block of MIN_PATTERN..MAX_PATTERN tokens repeated
    MIN_COUNT times (vLLM's check_sequence_repetition with these parameters).
    Cost: O(MAX_PATTERN) comparisons when nothing repeats (the first mismatch ends each
    pattern length), O(WINDOW) at most."""
    for size in range(MIN_PATTERN, MAX_PATTERN + 1):
        if size * MIN_COUNT > len(tokens):
            return False
        if all(
            tokens[-(size * m + n)] == tokens[-n]
            for n in range(1, size + 1)
            for m in range(1, MIN_COUNT)
        ):
            return True
    return False


def first_repeat(tokens: Sequence[int]) -> int | None:
    """The number of tokens after which `repeats` first holds (a completion checked after
    the fact: what an engine checking every step would have kept), else None."""
    for end in range(MIN_PATTERN * MIN_COUNT, len(tokens) + 1):
        if repeats(tokens[max(0, end - WINDOW) : end]):
            return end
    return None


def vllm_params() -> dict:
    """vLLM's RepetitionDetectionParams fields for this rule (offline and server)."""
    return {
        "max_pattern_size": MAX_PATTERN,
        "min_pattern_size": MIN_PATTERN,
        "min_count": MIN_COUNT,
    }
