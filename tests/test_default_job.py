"""The README's first command makes usable data: `bash scripts/magpie.sh` on the embedded
default, with a fixed seed, gives at least 85% usable records (issue 16)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO

from magpie.records import read_records

pytestmark = pytest.mark.slow


def usable(record: dict, specials: list[str]) -> bool:
    """An unflagged instruction and an unflagged, non-empty response with no template
    token in it (the issue's definition)."""
    response = record.get("response")
    return (
        not record.get("instruction_flag")
        and not record.get("response_flag")
        and bool(response and response.strip())
        and not any(s in response for s in specials)
    )


def test_magpie_sh_on_the_embedded_default_gives_usable_records(tmp_path, smol_tokenizer):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "TIMESTAMP": "1700000000", "SEED": "3"}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "magpie.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (res,) = tmp_path.glob("*/Magpie_SmolLM2-135M-Instruct_32_1700000000_ins_res.json")
    records = read_records(res)
    assert len(records) == 32
    specials = [t for t in smol_tokenizer.all_special_tokens if t]
    good = [r for r in records if usable(r, specials)]
    assert len(good) >= 0.85 * len(records), [
        (r["instruction_flag"], r["response_flag"]) for r in records
    ]
    assert len({r["response"] for r in good}) == len(good)  # real, distinct answers
    config = next(r["gen_response_configs"] for r in good)  # the embedded default's
    assert (config["temperature"], config["top_p"], config["frequency_penalty"]) == (0.7, 0.9, 0.3)
