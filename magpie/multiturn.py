"""Two conversation stages built on `magpie.turns`:

- `MultiTurnJob` (exp/gen_mt.py): extend records to N turns, as the original's
  gen_mt.py: follow-up instructions are extracted with the multi-turn system prompt,
  responses are generated without it. Records in any format of `magpie.conversation`
  are continued after their complete exchanges; the result is written back through it:
  the flat keys `instruction_2`, `response_2`, ..., the whole conversation as `conversation`
  [{role, content, reasoning?}], and `conversations` / `messages` when the record had them.
- `ConversationJob` (exp/gen_conv.py): one-pass steered generation with distilabel's
  options (n_turns, end_with_user, include_system_prompt, only_instruction,
  system_prompt as str / list / mapping / weighted mapping, per-record `system_prompt`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

from magpie.chat_template import (
    assistant_turn_prompt,
    first_user_prompt,
    supports_system,
    user_turn_prompt,
)
from magpie.conversation import (
    Conversation,
    ConversationError,
    Turn,
    message_list,
    read,
    write_back,
)
from magpie.engines.base import SamplingParams
from magpie.profiles import Profile
from magpie.prompt_text import count_special_text, flag_special_text
from magpie.records import InputError, Journal, iter_records, where
from magpie.stage import Summary, json_type
from magpie.turns import MULTI_TURN_SYSTEM_PROMPT, SystemPrompts, TurnStep, growing

log = logging.getLogger("magpie")


def _sampling(
    profile: Profile,
    temperature,
    top_p,
    repetition_penalty,
    max_tokens,
    seed,
    newline: bool = False,
    logits_processor: str | None = None,
    answer: bool = False,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
) -> SamplingParams:
    """User turns stop at the profile's stops; answers (`answer`) at its response stops
    (they differ for harmony models, whose answers hold channel markers). The penalties
    are OpenAI's, on the turn's own tokens (magpie.responses.used_penalties)."""
    stops = profile.response_stop_tokens if answer else profile.stop_tokens
    stop_ids = profile.response_stop_token_ids if answer else profile.stop_token_ids
    return SamplingParams(
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        max_tokens=max_tokens,
        stop=list(stops) + (["\n"] if newline else []),
        stop_token_ids=list(stop_ids),
        seed=seed,
        logits_processor=logits_processor,  # type: ignore[arg-type]
    )


def flagged(record: dict, conv: Conversation, tokenizer, summary: Summary) -> dict:
    """An output record with its special-token text flagged, its conversation's stop
    reason and special-token text counted in the summary as it passes to the output."""
    if conv.stop_reason:
        summary.flags[conv.stop_reason] += 1
    record = flag_special_text(record, tokenizer)
    count_special_text(summary.flags, (record,))
    return record


class MultiTurnJob(TurnStep):
    """Extend records of `input_file` to `num_turns` turns; output <stem>_mt.json.
    Items are conversations (see TurnStep)."""

    stage = "gen_mt"

    def __init__(
        self,
        profile: Profile,
        tokenizer,
        input_file: str | Path,
        output_path: str | Path,
        *,
        model_name: str,
        num_turns: int = 2,
        system_prompt: str = MULTI_TURN_SYSTEM_PROMPT,
        early_stopping: bool = True,
        instruction_params: dict,
        response_params: dict,
        max_tokens: int = 4096,
        seed: int | None = None,
    ):
        if num_turns < 2:
            raise InputError("--num_turns must be at least 2")
        self.input_file = input_file
        self.tokenizer, self.num_turns = tokenizer, num_turns
        self.max_turns = 2 * num_turns
        # One streaming pass before any weights load: every record's conversation read
        # (the first malformed one named), whether any has a system turn, and the fewest
        # exchanges of those to grow: steps count from the shortest (conversation i's turn
        # at step s has the seed of item i of "gen_mt/<s>", whichever chunk it is in).
        self.total, any_system, shortest = 0, False, None
        for i, record in enumerate(iter_records(input_file)):
            try:
                any_system = any_system or read(record).system is not None
            except ConversationError as e:
                raise InputError(f"{where(input_file, i)}: {e}") from None
            conv = self.opening(record)
            if growing(conv, self.max_turns):
                exchanges = len(conv.chat) // 2
                shortest = exchanges if shortest is None else min(shortest, exchanges)
            self.total += 1
        shortest = num_turns if shortest is None else shortest
        # Decided before any weights load: templates without a system turn (Gemma) get
        # none, neither the multi-turn prompt nor a record's own.
        self.with_system = supports_system(tokenizer)
        if not self.with_system and (system_prompt or any_system):
            log.info(
                "gen_mt: model %s: its chat template has no system turn; prompts are built "
                "without the multi-turn system prompt and without records' system turns",
                model_name,
            )
            system_prompt = ""
        self.system = system_prompt
        self.user_params = _sampling(
            profile, max_tokens=max_tokens, seed=seed, newline=early_stopping, **instruction_params
        )
        self.assistant_params = _sampling(
            profile, max_tokens=max_tokens, seed=seed, answer=True, **response_params
        )
        # Records that have turns already are continued from their last exchange.
        self.roles = ["user", "assistant"] * (num_turns - shortest)
        self.journal = Journal(
            output_path,
            {
                "stage": "gen_mt",
                "input": str(Path(input_file).resolve()),
                "records": self.total,
                "model": model_name,
                "num_turns": num_turns,
                "system_prompt": system_prompt,
                "early_stopping": early_stopping,
                "instruction": instruction_params,
                "response": response_params,
                "max_tokens": max_tokens,
                "seed": seed,
            },
        )
        self.configs = {
            "num_turns": num_turns,
            "system_prompt": system_prompt,
            "instruction": instruction_params,
            "response": response_params,
            "max_tokens": max_tokens,
            "mt_generator": model_name,
        }

    def sources(self) -> Iterator[dict]:
        """The input records (read from the file each time: validated in __init__)."""
        return iter_records(self.input_file)

    def opening(self, r: dict) -> Conversation:
        conv = read(r).complete()
        if not conv.has_response or r.get("instruction_flag") or r.get("response_flag"):
            conv.stop_reason = "input has no usable instruction and response"
        return conv

    def prompt(self, role: str, conv: Conversation) -> str:
        if role == "user" and self.system:
            system = [{"role": "system", "content": self.system}]
            return user_turn_prompt(self.tokenizer, system + message_list(conv, False))
        messages = message_list(conv, include_system=self.with_system)
        if role == "user":
            return user_turn_prompt(self.tokenizer, messages)
        return assistant_turn_prompt(self.tokenizer, messages)

    def summary(self) -> Summary:
        return Summary("gen_mt", self.total)

    def finish(self, summary: Summary) -> Summary:
        """Write every record grown as the journal says, streamed, flags counted."""
        engine = self.last_engine()

        def records() -> Iterator[dict]:
            for r, conv in self.replay():
                if conv.stop_reason and not conv.has_response:
                    record = dict(r)  # nothing usable: left as it came
                else:
                    record = write_back(r, conv)
                record.update(
                    conversation_stop_reason=conv.stop_reason,
                    gen_mt_configs={**self.configs, "engine": engine},
                )
                yield flagged(record, conv, self.tokenizer, summary)

        self.journal.finish(records())
        summary.records_out = self.total
        return summary


class ConversationJob(TurnStep):
    """One-pass conversations of `n_turns` turns for `total` records (or one per input row).
    Items are conversations (see TurnStep)."""

    stage = "gen_conv"

    def __init__(
        self,
        profile: Profile,
        tokenizer,
        output_path: str | Path,
        *,
        model_name: str,
        total: int | None = None,
        input_file: str | Path | None = None,
        n_turns: int = 1,
        end_with_user: bool = False,
        include_system_prompt: bool = False,
        only_instruction: bool = False,
        system_prompts: SystemPrompts | None = None,
        early_stopping: bool = True,
        instruction_params: dict,
        response_params: dict,
        max_tokens: int = 2048,
        seed: int = 0,
    ):
        if n_turns < 1:
            raise InputError("--n_turns must be at least 1")
        self.input_file, self.total = input_file, total or 0
        # One streaming pass over the rows before any weights load (the ids' types, the
        # first row whose system prompt is not a string, whether any row has one).
        id_types, bad_system, any_row, any_system = set(), None, False, False
        self.rows = 0
        for i, row in enumerate(self._rows()):
            id_types.add(json_type(row["id"]) if "id" in row else "missing")
            value = row.get("system_prompt")
            if bad_system is None and value is not None and not isinstance(value, str):
                bad_system = i
            any_row, any_system = any_row or bool(row), any_system or bool(value)
            self.rows += 1
        if not self.rows:
            raise InputError("give --total_prompts (at least 1) or --input_file")
        if len(id_types) > 1:
            raise InputError(
                f"{input_file}: the rows' ids are {' and '.join(sorted(id_types))}; give every "
                "row an id of one type, or none (then ids are 0, 1, ...)"
            )
        if bad_system is not None:
            raise InputError(
                f"{input_file}: record {bad_system}: field 'system_prompt' is not a string"
            )
        self.any_row, self.profile, self.tokenizer = any_row, profile, tokenizer
        self.model_name, self.only_instruction = model_name, only_instruction
        self.include_system_prompt, self.system_prompts = include_system_prompt, system_prompts
        self.roles = ["user"] if only_instruction else ["user", "assistant"] * n_turns
        if end_with_user and not only_instruction:
            self.roles = self.roles[:-1]  # the last turn is the user's
        self.single = n_turns == 1 or only_instruction
        # Without a system prompt, multi-turn conversations get the paper's one where possible;
        # a template without a system turn (Gemma) is known before any weights load.
        with_system = profile.system_prompt_template is not None and supports_system(tokenizer)
        self.default_system = MULTI_TURN_SYSTEM_PROMPT if n_turns > 1 and with_system else None
        if n_turns > 1 and not with_system:
            log.info(
                "gen_conv: model %s: its chat template has no system turn; conversations "
                "are generated without the multi-turn system prompt",
                model_name,
            )
        if not with_system and (system_prompts or any_system):
            raise InputError(f"model {model_name}: its chat format has no system turn")
        self.seed = seed
        self.user_params = _sampling(
            profile, max_tokens=max_tokens, seed=seed, newline=early_stopping, **instruction_params
        )
        self.assistant_params = _sampling(
            profile, max_tokens=max_tokens, seed=seed, answer=True, **response_params
        )
        self.gen_configs = {
            "n_turns": n_turns,
            "end_with_user": end_with_user,
            "instruction": instruction_params,
            "response": response_params,
            "max_tokens": max_tokens,
            "input_generator": model_name,
            "seed": seed,
        }
        spec = None
        if system_prompts:
            spec = [system_prompts.prompts, system_prompts.weights, system_prompts.keys]
        self.journal = Journal(
            output_path,
            {
                "stage": "gen_conv",
                "rows": self.rows,
                "input": str(Path(input_file).resolve()) if input_file else None,
                "system_prompts": spec,
                "roles": self.roles,
                **self.gen_configs,
                "early_stopping": early_stopping,
            },
        )

    def _rows(self) -> Iterator[dict]:
        """The input rows, or `total` empty ones, one at a time."""
        if self.input_file:
            return iter_records(self.input_file)
        return ({} for _ in range(self.total))

    def sources(self) -> Iterator[tuple[dict, tuple[str | None, str | None]]]:
        """(row, (key, system prompt)) of every row, the system prompts drawn in row order
        from the run seed (the same draws whatever the chunking, and on a resume)."""
        rng = random.Random(self.seed)
        for row in self._rows():
            key, prompt = (None, None)
            if self.system_prompts:
                key, prompt = self.system_prompts.choose(rng)  # drawn for every row: stable
            if row.get("system_prompt"):
                key, prompt = None, row["system_prompt"]
            elif prompt is None:
                prompt = self.default_system
            yield row, (key, prompt)

    def opening(self, source: tuple[dict, tuple[str | None, str | None]]) -> Conversation:
        prompt = source[1][1]
        return Conversation([Turn("system", prompt)] if prompt else [])

    def prompt(self, role: str, conv: Conversation) -> str:
        if role == "user":
            if not conv.chat:
                system = conv.turns[0].text if conv.turns else None
                pre_query = self.profile.pre_query_template
                return first_user_prompt(self.tokenizer, pre_query, system)
            return user_turn_prompt(self.tokenizer, message_list(conv))
        return assistant_turn_prompt(self.tokenizer, message_list(conv))

    def summary(self) -> Summary:
        return Summary("gen_conv", self.rows if self.any_row else 0)

    def finish(self, summary: Summary) -> Summary:
        """Write one record per row, grown as the journal says, streamed, flags counted."""
        engine = self.last_engine()
        self.journal.finish(self._records(engine, summary))
        summary.records_out = self.rows
        return summary

    def _records(self, engine: str | None, summary: Summary) -> Iterator[dict]:
        for i, ((row, (key, system)), conv) in enumerate(self.replay()):
            record: dict = {"id": i, **row}
            turns = conv.chat
            if self.single:
                record["instruction"] = turns[0].text if turns else None
                if not self.only_instruction and self.roles[-1] == "assistant":
                    record["response"] = turns[1].text if len(turns) > 1 else None
                if self.include_system_prompt:
                    record["system_prompt"] = system
            else:  # a conversation that stopped early keeps its complete exchanges
                done = conv.complete() if conv.stop_reason else conv
                record["conversation"] = message_list(done, self.include_system_prompt)
            if self.system_prompts and self.system_prompts.keys:
                record["system_prompt_key"] = key
            record["model_name"] = self.model_name
            record["conversation_stop_reason"] = conv.stop_reason
            record["gen_input_configs"] = {**self.gen_configs, "engine": engine}
            yield flagged(record, conv, self.tokenizer, summary)
