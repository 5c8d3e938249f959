"""Stage 2: answer each instruction with the same model (the original's gen_res.py), and
its preference twin, N sampled answers per instruction (the original's gen_po_multi_res.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from magpie.engines import EngineOptions
from magpie.models import canonical_name
from magpie.profiles import get_profile
from magpie.records import InputError, overwriting, saved_as
from magpie.responses import (
    ResponseJob,
    check_input,
    response_file_name,
    response_settings,
)
from magpie.settings import SAVE_AS_HELP, Settings, command, console, flag
from magpie.stage import already_complete
from magpie.stages.gen_ins import MODEL_PATH_HELP, OVERWRITE_HELP


@dataclasses.dataclass
class GenRes(Settings):
    """Generate a response for every instruction of INPUT_FILE (.json or .jsonl).
    Writes <input stem>_res.json next to the input."""

    stage = "gen_res"
    uses_engine = True
    # The original's defaults; the embedded model's are EMBEDDED_RESPONSE_DEFAULTS
    # (magpie/responses.py): greedy answers of a 135M model loop.
    original_defaults: ClassVar[dict] = {
        "temperature": 0.0,
        "top_p": 1.0,
        "frequency_penalty": 0.0,
        "max_tokens": 4096,
    }

    input_file: str | None = flag(
        None,
        "records with an `instruction` field (the output of gen_ins.py), or conversations "
        "(`conversations`, `messages`, `conversation`, `input`) ending on a user turn, "
        "which get the answer as their next assistant turn.",
    )
    model_path: str = flag("", MODEL_PATH_HELP)
    temperature: float | None = flag(
        None,
        "sampling temperature; 0 = greedy. Default 0 (the original's; 0.8 for "
        "gen_po_multi_res), 0.7 on the embedded model.",
    )
    top_p: float | None = flag(
        None, "nucleus sampling threshold; default 1, 0.9 on the embedded model."
    )
    repetition_penalty: float = flag(1.0, "CTRL-style penalty on tokens already present.")
    frequency_penalty: float | None = flag(
        None,
        "OpenAI's penalty per occurrence of a token in the response so far (not the "
        "prompt), in [-2, 2]; default 0, 0.3 on the embedded model.",
    )
    presence_penalty: float = flag(
        0.0, "OpenAI's penalty on any token already in the response, in [-2, 2]."
    )
    max_tokens: int | None = flag(
        None,
        'most tokens per response; longer ones are flagged "unfinished". Default 4096, '
        "512 on the embedded model.",
    )
    seed: int | None = flag(None, "random seed for sampling.")
    checkpoint_every: int = flag(
        20, "kept for compatibility; every record is journaled as it is made."
    )
    response_mode: str | None = flag(
        None,
        "with --engine openai: template (default; raw completion of the chat template "
        "rendered here) or chat (the server's chat endpoint applies its template).",
    )
    enable_thinking: bool | None = flag(
        None,
        "passed to the chat template (Qwen3's switch): False renders it without thinking; "
        "default the template's own choice. A thinking model's thoughts go to "
        "`reasoning`, its answer to `response`.",
    )
    output_file: str | None = flag(None, "default <input stem>_res.json next to the input.")
    save_as: str = flag("json", SAVE_AS_HELP)
    overwrite: bool = flag(False, OVERWRITE_HELP)

    def sampling(self) -> dict:
        """The sampling settings with their defaults resolved: as given, else the
        embedded model's measured ones on the embedded model, else the original's."""
        given = {k: getattr(self, k) for k in self.original_defaults}
        return response_settings(self.model_path, given, self.original_defaults)

    def output_path(self) -> Path:
        if self.output_file:
            return Path(self.output_file)
        return saved_as(response_file_name(self.input_file, self.file_suffix()), self.save_as)

    def file_suffix(self) -> str:
        return "_res"

    def job_options(self) -> dict:
        return {}

    def run(self, engine: EngineOptions | None = None) -> Path:
        engine = engine or EngineOptions()
        if not self.input_file:
            raise InputError("--input_file is required")
        output = self.output_path()
        # Bad input fails before any model (or tokenizer) loads: one streaming pass.
        check_input(self.input_file, multi=self.stage == "gen_po_multi_res")
        name = canonical_name(self.model_path)
        tokenizer = engine.tokenizer(self.model_path)
        with overwriting(self.overwrite):
            job = ResponseJob(
                get_profile(name, tokenizer),
                self.input_file,
                output,
                model_name=name,
                repetition_penalty=self.repetition_penalty,
                presence_penalty=self.presence_penalty,
                **self.sampling(),
                seed=self.seed,
                enable_thinking=self.enable_thinking,
                **self.job_options(),
            )
        if already_complete(self.stage, job.journal, output):
            return output
        summary = engine.run(
            job,
            self.model_path,
            seed=self.seed,
            tokenizer=tokenizer,
            response_mode=self.response_mode,
        )
        print(summary.line())
        print(f"[{self.stage}] wrote {output}")
        return output


@dataclasses.dataclass
class GenPoMultiRes(GenRes):
    """Sample NUM_SAMPLES responses for every instruction of INPUT_FILE (.json or .jsonl),
    one request per prompt with n samples (preference data, step 1). Writes
    <input stem>_<num_samples>res.json next to the input."""

    stage = "gen_po_multi_res"
    original_defaults: ClassVar[dict] = {**GenRes.original_defaults, "temperature": 0.8}

    num_samples: int = flag(5, "responses per instruction.")

    def file_suffix(self) -> str:
        if int(self.num_samples) < 1:
            raise InputError(f"--num_samples must be at least 1, not {self.num_samples}")
        return f"_{int(self.num_samples)}res"

    def job_options(self) -> dict:
        return {"num_samples": int(self.num_samples)}


main, cli = command(GenRes), console(GenRes)
main_po_multi_res, cli_po_multi_res = command(GenPoMultiRes), console(GenPoMultiRes)

if __name__ == "__main__":
    cli()
