"""Issue 14: behaviour of the original that users rely on, restored and tested against the
values written in its description (docs: original-magpie.md), not against our own code."""

from __future__ import annotations

from magpie.instructions import InstructionJob
from magpie.profiles import get_profile

# The original's configs/model_configs.json for Meta-Llama-3-8B-Instruct (its §3).
LLAMA3_STOP_TOKENS = ["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"]


def test_instruction_stop_strings_include_stop_tokens_assistant(tmp_path, clean_env):
    # gen_ins.py: stop = stop_tokens + stop_tokens_assistant + ["\n"] with early stopping.
    profile = get_profile("meta-llama/Meta-Llama-3-8B-Instruct")
    job = InstructionJob(
        profile,
        tmp_path / "ins.json",
        model_name="meta-llama/Meta-Llama-3-8B-Instruct",
        total_prompts=4,
        n=4,
    )
    assert job.params.stop == [*LLAMA3_STOP_TOKENS, "assistant", "\n"]
    assert job.params.stop_token_ids == [128009, 128001, 128006, 128007]
    job.journal.close()


def test_qwen_stops_on_both_assistant_spellings(tmp_path, clean_env):
    job = InstructionJob(
        get_profile("Qwen/Qwen2-7B-Instruct"),
        tmp_path / "ins.json",
        model_name="Qwen/Qwen2-7B-Instruct",
        total_prompts=2,
        n=2,
        early_stopping=False,
    )
    assert job.params.stop == [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "Assistant",
        "assistant",
    ]
    job.journal.close()


# ---------------------------------------------------------------------------------------
# 2. The original's command lines (its scripts, original-magpie.md §1) run unchanged.

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
from conftest import REPO, tiny_reward  # noqa: E402

from magpie.compat import original_argv  # noqa: E402
from magpie.engines import EngineOptions  # noqa: E402
from magpie.records import InputError  # noqa: E402
from magpie.settings import command, run_command  # noqa: E402
from magpie.stages.gen_dis import GenDis  # noqa: E402
from magpie.stages.gen_ins import GenIns  # noqa: E402
from magpie.stages.gen_mt import GenMt  # noqa: E402
from magpie.stages.gen_po_rewards import GenPoRewards  # noqa: E402
from magpie.stages.gen_res import GenPoMultiRes, GenRes  # noqa: E402
from magpie.stages.unitag import Unitag  # noqa: E402

# Each stage's settings type: its flags are what its command line accepts.
SETTINGS = {
    "gen_ins": GenIns,
    "gen_res": GenRes,
    "gen_po_multi_res": GenPoMultiRes,
    "gen_mt": GenMt,
    "unitag": Unitag,
    "gen_po_rewards": GenPoRewards,
    "gen_dis": GenDis,
}


def accepted(stage: str) -> set[str]:
    import inspect

    return set(inspect.signature(command(SETTINGS[stage])).parameters)


# Written from the original's scripts (§1.1-1.5): what each stage was called with.
ORIGINAL_LINES = {
    "gen_ins": [
        "--device 0,1,2,3 --model_path meta-llama/Meta-Llama-3-70B-Instruct --total_prompts 1000"
        " --top_p 1 --temperature 1 --tensor_parallel 4 --gpu_memory_utilization 0.95 --n 200"
        " --job_name J --timestamp 1718659695",
        "--device 0 --model_path meta-llama/Meta-Llama-3.1-8B-Instruct --total_prompts 1000"
        " --top_p 1 --temperature 0.8 --tensor_parallel 1 --gpu_memory_utilization 0.95"
        " --n 200 --job_name J --timestamp 1 --disable_early_stopping --sanitize"
        " --logits_processor --max_tokens 1024",
        "--device 0 --model_path google/gemma-2-9b-it --total_prompts 1000 --top_p 1"
        " --temperature 1 --tensor_parallel 1 --gpu_memory_utilization 0.95 --n 10 --job_name J"
        " --timestamp 1 --disable_early_stopping --sanitize --engine hf --max_tokens 512",
        "--device 0 --model_path Qwen/Qwen2.5-Math-72B-Instruct --total_prompts 1000 --top_p 0.9"
        " --temperature 0.6 --tensor_parallel 4 --gpu_memory_utilization 0.95 --n 200"
        " --job_name J --timestamp 1 --flaming_tokens",
        "--device 0 --model_path meta-llama/Meta-Llama-3-8B-Instruct --total_prompts 1000"
        " --top_p 1 --temperature 1 --tensor_parallel 1 --gpu_memory_utilization 0.95 --n 200"
        " --job_name J --timestamp 1 --control_tasks translation --disable_early_stopping",
    ],
    "gen_res": [
        "--device 0,1,2,3 --model_path Qwen/Qwen2-72B-Instruct --batch_size 200 --top_p 1"
        " --temperature 0 --repetition_penalty 1 --tensor_parallel 4"
        " --gpu_memory_utilization 0.95 --input_file x_ins.json --offline"
        " --use_tokenizer_template",
        "--device 0 --model_path google/gemma-2-9b-it --batch_size 2 --top_p 1 --temperature 0"
        " --repetition_penalty 1 --tensor_parallel 1 --gpu_memory_utilization 0.95"
        " --input_file x_ins.json --engine hf --max_tokens 2048",
    ],
    "gen_mt": [
        "--device 0 --model_path meta-llama/Meta-Llama-3-8B-Instruct --input_file x_res.json"
        " --num_turns 2 --tensor_parallel 1 --gpu_memory_utilization 0.95 --batch_size 128",
    ],
    "unitag": [
        "--device 0 --model_path meta-llama/Meta-Llama-3-8B-Instruct --input_file x.json"
        " --tag_mission difficulty --tensor_parallel 1 --gpu_memory_utilization 0.95"
        " --batch_size 1000",
        "--device 0 --guard_model_path meta-llama/Meta-Llama-Guard-2-8B --input_file x.json"
        " --tag_mission safety --tensor_parallel 1 --gpu_memory_utilization 0.95"
        " --batch_size 1000",
        "--device 0 --reward_model_path sfairXC/FsfairX-LLaMA3-RM-v0.1 --input_file x.json"
        " --tag_mission reward --tensor_parallel 1 --batch_size 1",
        "--device 0 --input_file x.json --tag_mission language",
        "--input_file x.json --quantization fp8 --kv_cache_dtype auto --offline --debug False",
    ],
    "gen_po_multi_res": [
        "--device 0 --input_file ../data_po/example_instructions.jsonl --model_path"
        " meta-llama/Meta-Llama-3-8B-Instruct --num_samples 5 --batch_size 200 --top_p 1"
        " --temperature 0.8 --repetition_penalty 1 --tensor_parallel 1"
        " --gpu_memory_utilization 0.95 --offline",
    ],
    "gen_po_rewards": ["--device 0 --input_file x_5res.json"],
    "gen_dis": ["--input_file x_sharegpt.jsonl --distance_distance_threshold 0.05 --device 0"],
}
LINES = [(stage, line) for stage, lines in ORIGINAL_LINES.items() for line in lines]


@pytest.mark.parametrize("stage, line", LINES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(LINES)])
def test_original_command_lines_parse(stage, line):
    args = original_argv(stage, line.split(), accepted(stage))
    names = {a[2:] for a in args if a.startswith("--")}
    assert names <= accepted(stage), names - accepted(stage)
    if "--tensor_parallel" in line.split():
        i = args.index("--tensor_parallel_size")
        assert args[i + 1] == line.split()[line.split().index("--tensor_parallel") + 1]
    for dropped in ("--offline", "--use_tokenizer_template", "--quantization", "--debug"):
        assert dropped not in args


def test_noop_flags_take_their_value_and_say_so(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="magpie"):
        args = original_argv(
            "unitag", ["--quantization", "fp8", "--input_file", "x.json"], {"input_file"}
        )
    assert args == ["--input_file", "x.json"]
    assert "--quantization fp8 ignored" in caplog.text


@pytest.mark.parametrize(
    "stage, argv, message",
    [
        ("gen_ins", ["--tensor_paralel", "4"], "unknown flag --tensor_paralel"),
        ("gen_ins", ["--frobnicate"], "unknown flag --frobnicate"),
        ("gen_po_rewards", ["--quantization", "fp8"], "unknown flag --quantization"),
        # argparse refused a prefix shared by two of the original's flags.
        ("gen_mt", ["--response", "0"], "ambiguous"),
    ],
)
def test_unknown_and_ambiguous_flags_are_refused(stage, argv, message):
    with pytest.raises(InputError, match=message):
        original_argv(stage, argv, accepted(stage))


def test_unknown_flag_exits_2_with_one_line():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "exp" / "gen_res.py"),
            "--input_file",
            "x.json",
            "--bogus",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "error: unknown flag --bogus for gen_res (see --help)"
    )


class Reached(Exception):
    pass


def test_gen_ins_original_line_reaches_the_job(tmp_path, monkeypatch, clean_env):
    """magpie-llama3-70b.sh's gen_ins line: TP 4 and GPUs 0-3 reach the engine; no model loads."""
    seen = {}

    def load(self, model_path, **options):
        seen.update(vars(self), model_path=model_path)
        raise Reached

    monkeypatch.setattr(EngineOptions, "tokenizer", lambda self, model_path: None)
    monkeypatch.setattr(EngineOptions, "load", load)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    line = ORIGINAL_LINES["gen_ins"][0] + f" --output_folder {tmp_path} --offline"
    with pytest.raises(Reached):
        run_command(GenIns, line.split())
    assert seen["tensor_parallel_size"] == 4
    assert seen["gpu_memory_utilization"] == 0.95
    assert seen["model_path"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert seen["device"] is None  # GPU indices are not a torch device name


@pytest.mark.parametrize(
    "device, visible, torch_device",
    [("0", "0", None), ("cuda:1", None, "cuda:1"), ("cpu", None, "cpu")],
)
def test_device_means_what_the_original_meant(device, visible, torch_device, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    options = EngineOptions(device=device)
    assert options.device == torch_device
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible


# ---------------------------------------------------------------------------------------
# 5. De-markdown bans header openers only (the original: Llama-3.1's "#" "##" "###" "####").


def test_de_markdown_bans_headers_only(smol_tokenizer):
    from magpie.logits import markdown_header_token_ids

    banned = {
        smol_tokenizer.convert_ids_to_tokens(i) for i in markdown_header_token_ids(smol_tokenizer)
    }
    # Written from SmolLM2's vocabulary: '#'..'####' alone, with or without the space marker.
    assert banned == {"#", "##", "###", "####", "Ġ#", "Ġ##", "Ġ###", "Ġ####"}
    for allowed in ("#!", "#!/", "Ġ#:", "########", "/#", 'Ġ"#'):
        assert allowed in smol_tokenizer.get_vocab() and allowed not in banned


# ---------------------------------------------------------------------------------------
# 4, 10. Reward scores: named after their model; long inputs keep the answer.


def test_reward_truncation_cuts_the_instruction_start_and_keeps_the_answer(
    tmp_path, smol_tokenizer
):
    from magpie.records import read_records, write_records
    from magpie.tagging.inputs import Conversation
    from magpie.tagging.job import tag_file
    from magpie.tagging.reward import RewardScorer

    scorer = RewardScorer(str(tiny_reward(tmp_path / "rm", smol_tokenizer)), dtype="float32")
    assert scorer.max_length == 256
    instruction = "FIRSTWORDS " + "please explain this in detail " * 80 + "LASTWORDS?"
    answer = "The answer is forty-two, and here is why: it is the answer. ENDOFANSWER"
    ids, truncated = scorer.fit(Conversation([("user", instruction), ("assistant", answer)]))
    text = smol_tokenizer.decode(ids)
    assert truncated and len(ids) <= 256
    assert answer in text and "LASTWORDS?" in text and "FIRSTWORDS" not in text
    assert text.startswith("<|im_start|>")  # the template's head is whole
    short, cut = scorer.fit(Conversation([("user", "Hi?"), ("assistant", answer)]))
    assert not cut and answer in smol_tokenizer.decode(short)

    src = tmp_path / "x.json"
    write_records(
        src,
        [
            {"instruction": instruction, "response": answer},
            {"instruction": "Hi?", "response": answer},
        ],
    )
    tag_file("reward", scorer, src, tmp_path / "x_reward.json")
    assert [r["reward_truncated"] for r in read_records(tmp_path / "x_reward.json")] == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    "name, field", [("ArmoRM-Llama3-tiny", "rewards_armorm"), ("FsfairX-tiny", "rewards")]
)
def test_reward_field_is_named_after_its_model(tmp_path, smol_tokenizer, name, field):
    from magpie.preference import RewardJob, build_pairs
    from magpie.records import read_records, write_records
    from magpie.tagging.reward import RewardScorer

    model = tiny_reward(tmp_path / name, smol_tokenizer)
    src = tmp_path / "x_2res.json"
    write_records(
        src,
        [
            {"instruction": "Say hi", "responses": ["Hi!", "Hello there, friend."]},
            {"instruction": "Count", "responses": ["1 2 3", "one two three four"]},
        ],
    )
    out = tmp_path / "x_2res_armorm.json"
    job = RewardJob(src, out, reward_model=str(model), dtype="float32")
    job.run(RewardScorer(str(model), dtype="float32"))
    records = read_records(out)
    other = {"rewards_armorm", "rewards"} - {field}
    for r in records:
        assert len(r[field]) == 2 and not other & set(r)
        assert r["rewards_model"] == str(model) and r["rewards_truncated"] is False
    counts = build_pairs(out, test_size=0)  # finds the field by itself
    assert counts["pairs"] + sum(counts["dropped"].values()) == 2


# ---------------------------------------------------------------------------------------
# 9. The FAISS index and its description are never out of step.


def test_faiss_index_never_keeps_another_index_description(tmp_path, monkeypatch):
    import faiss
    import numpy as np

    from magpie.dedup.search import load_index, save_index

    path = tmp_path / "x.faiss"
    vectors = np.eye(4, dtype="float32")
    meta = {"sentence_model": "m", "dtype": "float32", "n_unique": 4, "texts_sha1": "a"}
    save_index(path, None, vectors, meta)
    load_index(path, meta)

    def killed(index, name):
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        save_index(path, None, vectors[:2], {**meta, "n_unique": 2, "texts_sha1": "b"})
    # The old description is gone with the half-done save: the index is refused, not
    # taken for the new texts or described as the old ones.
    with pytest.raises(InputError, match="not found"):
        load_index(path, meta)


# ---------------------------------------------------------------------------------------
# 6. gen_dis's default threshold fits its default model.


def test_minilm_threshold_separates_the_labelled_pairs():
    import numpy as np

    from magpie.dedup import default_threshold
    from magpie.embeddings import load_sentence_model

    threshold, why = default_threshold("")
    assert threshold == 0.1 and "MiniLM" in why
    assert default_threshold("sentence-transformers/all-mpnet-base-v2")[0] == 0.05  # original
    from magpie.records import read_records

    pairs = read_records(REPO / "tests" / "fixtures" / "dedup" / "threshold_pairs.jsonl")
    model = load_sentence_model("", device="cpu", dtype="float32")
    a = model.encode([p["a"] for p in pairs], normalize_embeddings=True)
    b = model.encode([p["b"] for p in pairs], normalize_embeddings=True)
    near = np.sum((a - b) ** 2, axis=1) < threshold
    same = [p["same_request"] for p in pairs]
    caught = sum(n for n, s in zip(near, same, strict=True) if s)
    merged = [p for p, n, s in zip(pairs, near, same, strict=True) if n and not s]
    assert caught >= 0.85 * sum(same)
    # Only the pair that no threshold separates (units swapped) is merged.
    assert [p["a"] for p in merged] == ["Convert 100 degrees Fahrenheit to Celsius."]


# ---------------------------------------------------------------------------------------
# 11. Task temperature is used; a template refusing a role is not a broken template.


def test_task_temperature_reaches_the_tagger_and_bad_values_are_refused(tmp_path):
    from magpie.tasks import _tag_options, load_task

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "Hi", "response": "Hello"}\n')
    task = tmp_path / "t.yaml"
    base = (
        "task_name: t\ncreated_by: me\ntask_description: d\ndata_builder: magpie_tag_transform\n"
        "seed_datastore:\n  data_path: d.jsonl\n"
    )
    task.write_text(base + "temperature: 0.5\n")
    assert _tag_options(load_task(task)).temperature == 0.5
    task.write_text(base)
    assert _tag_options(load_task(task)).temperature == 0.0  # greedy, as the original
    task.write_text(base + "temperature: hot\n")
    with pytest.raises(InputError, match=r"t\.yaml: field 'temperature' must be a number"):
        load_task(task)


def test_only_a_template_refusal_means_no_system_turn():
    from magpie.profiles import derive_profile

    refuses = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}"
        "<u>{{ m['content'] }}</u>{% endfor %}"
    )
    assert derive_profile("refuses", refuses).system_prompt_template is None
    broken = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + 1 }}"
        "{% endif %}<u>{{ m['content'] }}</u>{% endfor %}"
    )
    with pytest.raises(InputError, match="model broken: its chat template fails on a system"):
        derive_profile("broken", broken)


def test_an_instruction_cut_at_a_role_word_says_so(tmp_path, clean_env):
    """Cut at "assistant" as the original cut, but recorded as such (its §9 item 6: a
    legitimate use of the word is cut too), so users can filter on it."""
    from magpie.engines.base import Completion

    job = InstructionJob(
        get_profile("meta-llama/Meta-Llama-3-8B-Instruct"),
        tmp_path / "ins.json",
        model_name="meta-llama/Meta-Llama-3-8B-Instruct",
        total_prompts=2,
        n=2,
    )
    cut = job._record(0, Completion("Write a poem about an ", "stop", "assistant", 5, 6))
    turn = job._record(1, Completion("Write a poem.", "stop", 128009, 5, 4))
    job.journal.close()
    assert (cut["instruction_finish_reason"], cut["instruction_flag"]) == ("role_word", None)
    assert cut["instruction"] == "Write a poem about an"
    assert turn["instruction_finish_reason"] == "end_of_turn"
