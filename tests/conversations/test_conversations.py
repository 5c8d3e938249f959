"""Multi-turn extension and one-pass steered conversations."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from conftest import FIXTURES

from magpie.chat_template import assistant_turn_prompt, render_chat, user_turn_prompt
from magpie.records import InputError, read_records, state_path
from magpie.turns import MULTI_TURN_SYSTEM_PROMPT, parse_system_prompts


class FixtureTokenizer:
    """Just enough of a tokenizer to render a real chat template kept as a fixture."""

    def __init__(self, template: str, bos: str, eos: str):
        self.chat_template = (FIXTURES / "chat_templates" / template).read_text()
        self.bos, self.eos = bos, eos

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **_):
        return render_chat(
            self.chat_template,
            messages,
            add_generation_prompt,
            bos_token=self.bos,
            eos_token=self.eos,
        )


LLAMA3 = FixtureTokenizer("llama3.jinja", "<|begin_of_text|>", "<|eot_id|>")
SMOL = FixtureTokenizer("smollm2.jinja", "<|im_start|>", "<|im_end|>")
QWEN25 = FixtureTokenizer("qwen2.5.jinja", "", "<|im_end|>")
GEMMA2 = FixtureTokenizer("gemma2.jinja", "<bos>", "<eos>")
MISTRAL = FixtureTokenizer("mistral-v0.3-minimal.jinja", "<s>", "</s>")
PHI3 = FixtureTokenizer("phi3.jinja", "<s>", "<|endoftext|>")

TURNS = [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}]
SYS = [{"role": "system", "content": "S"}]
QWEN_SYS = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
SMOL_SYS = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

FOLLOW_UP = {
    "llama3": (
        LLAMA3,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
    ),
    "smollm2": (
        SMOL,
        SMOL_SYS + "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1"
        "<|im_end|>\n<|im_start|>user\n",
    ),
    "qwen2.5": (
        QWEN25,
        QWEN_SYS + "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1"
        "<|im_end|>\n<|im_start|>user\n",
    ),
    "gemma2": (
        GEMMA2,
        "<bos><start_of_turn>user\nU1<end_of_turn>\n<start_of_turn>model\nA1"
        "<end_of_turn>\n<start_of_turn>user\n",
    ),
    "mistral": (MISTRAL, "<s>[INST] U1[/INST] A1</s>[INST] "),
    "phi3": (PHI3, "<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\n"),
}
WITH_SYSTEM = {
    "llama3": (
        LLAMA3,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
    ),
    "smollm2": (
        SMOL,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\n",
    ),
    "qwen2.5": (
        QWEN25,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\n",
    ),
    # Mistral's template joins the system text to the last user turn: here, the new one.
    "mistral": (MISTRAL, "<s>[INST] U1[/INST] A1</s>[INST] S\n\n"),
    "phi3": (
        PHI3,
        "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\n",
    ),
}


@pytest.mark.parametrize("family", sorted(FOLLOW_UP))
def test_follow_up_user_prompt_is_exact(family):
    tok, expected = FOLLOW_UP[family]
    prompt = user_turn_prompt(tok, TURNS)
    assert prompt == expected
    if tok.bos and tok.bos != "<|im_start|>":  # SmolLM2's "BOS" is its turn opener
        assert prompt.count(tok.bos) <= 1  # never a second BOS


@pytest.mark.parametrize("family", sorted(WITH_SYSTEM))
def test_follow_up_with_system_prompt_is_exact(family):
    tok, expected = WITH_SYSTEM[family]
    assert user_turn_prompt(tok, SYS + TURNS) == expected


def test_first_turn_with_system_has_no_dangling_assistant_header():
    prompt = user_turn_prompt(LLAMA3, SYS)
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )
    assert "assistant" not in prompt


def test_gemma_rejects_a_system_prompt_clearly():
    with pytest.raises(InputError, match="chat template rejects"):
        user_turn_prompt(GEMMA2, SYS + TURNS)


def test_assistant_prompt_opens_the_assistant_turn():
    p = assistant_turn_prompt(SMOL, TURNS + [{"role": "user", "content": "U2"}])
    assert p.endswith("<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------ system prompt specs
def test_weighted_choice_frequencies_and_float_rounding():
    spec = {k: [f"prompt {k}", w] for k, w in zip("abcde", [0.6, 0.1, 0.1, 0.1, 0.1], strict=True)}
    prompts = parse_system_prompts(spec)  # sums to 0.9999999999999999: accepted
    rng = random.Random(0)
    counts = Counter(prompts.choose(rng)[0] for _ in range(20000))
    assert abs(counts["a"] / 20000 - 0.6) < 0.02
    for k in "bcde":
        assert abs(counts[k] / 20000 - 0.1) < 0.015
    # Unnormalised weights are normalised.
    assert parse_system_prompts({"x": ["p", 3], "y": ["q", 1]}).weights == [0.75, 0.25]


def test_list_and_plain_mapping_are_uniform():
    lst = parse_system_prompts(["p1", "p2"])
    assert lst.keys is None and lst.weights == [1.0, 1.0]
    mapping = parse_system_prompts({"k1": "p1", "k2": "p2"})
    rng = random.Random(1)
    counts = Counter(mapping.choose(rng)[0] for _ in range(4000))
    assert abs(counts["k1"] - 2000) < 150


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"a": ["p", -0.5], "b": ["q", 1.0]}, "negative"),
        ({"a": ["p", 0], "b": ["q", 0.0]}, "all zero"),
        ({"a": ["p", "heavy"]}, "not a number"),
        ({"a": ["p", 1, 2]}, "expected a prompt or"),
        ([], "non-empty strings"),
        ({}, "empty"),
        (42, "expected a string, list or mapping"),
    ],
)
def test_bad_system_prompt_specs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_system_prompts(spec)


def test_system_prompts_from_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"math": ["Solve.", 2], "code": ["Code.", 1]}))
    (tmp_path / "p.yaml").write_text("math: [Solve., 2]\ncode: [Code., 1]\n")
    for name in ("p.json", "p.yaml"):
        p = parse_system_prompts(str(tmp_path / name))
        assert p.keys == ["math", "code"] and p.prompts == ["Solve.", "Code."]
        assert abs(p.weights[0] - 2 / 3) < 1e-9


# ------------------------------------------------------------------ real conversations
@pytest.fixture(scope="module")
def smol_engine(embedded_dir):
    from magpie.engines.hf import HFEngine
    from magpie.models import DEFAULT_MODEL

    return HFEngine(DEFAULT_MODEL, batch_size=16, seed=0)


def smol_profile(engine):
    from magpie.models import DEFAULT_MODEL
    from magpie.profiles import get_profile

    return get_profile(DEFAULT_MODEL, engine.tokenizer)


LEAKS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}
FINISHING = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0, "frequency_penalty": 0.3}


def test_real_three_turn_extension(smol_engine, tmp_path):
    from magpie.multiturn import MultiTurnJob

    src = tmp_path / "x_ins_res.json"
    seeds = [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Give me a tip for learning to cook.", "Start with simple recipes and practise."),
        ("How do plants make food?", "Plants make food by photosynthesis, using sunlight."),
        ("What is 2 + 2?", "2 + 2 = 4."),
        ("", None),
    ]
    src.write_text(
        json.dumps([{"id": i, "instruction": q, "response": a} for i, (q, a) in enumerate(seeds)])
    )
    job = MultiTurnJob(
        smol_profile(smol_engine),
        smol_engine.tokenizer,
        src,
        tmp_path / "x_ins_res_mt.json",
        model_name="smol",
        num_turns=3,
        instruction_params=SAMPLING,
        response_params=SAMPLING,
        max_tokens=200,
        seed=5,
    )
    summary = job.run(smol_engine)
    out = read_records(tmp_path / "x_ins_res_mt.json")
    assert summary.records_out == 5 and [r["id"] for r in out] == list(range(5))
    assert out[4]["conversation_stop_reason"].startswith("input has no usable")
    complete = [r for r in out if r["conversation_stop_reason"] is None]
    assert complete, [r["conversation_stop_reason"] for r in out]
    for r in out[:4]:
        conv = r["conversation"]
        assert [m["role"] for m in conv] == ["user", "assistant"] * (len(conv) // 2)
        assert conv[0]["content"] == r["instruction"]
        for m in conv:
            assert m["content"] and not any(t in m["content"] for t in LEAKS)
        if r["conversation_stop_reason"] is None:
            assert len(conv) == 6
            assert r["instruction_3"] == conv[4]["content"]
            assert r["response_3"] == conv[5]["content"]
        else:  # the turn that failed is named, and only complete turns are kept
            assert r["conversation_stop_reason"].split()[-1] in ("empty", "unfinished")
            assert "instruction_3" not in r or "response_2" in r


def test_one_pass_columns_and_steering(smol_engine, tmp_path):
    from magpie.multiturn import ConversationJob
    from magpie.turns import parse_system_prompts as parse

    profile = smol_profile(smol_engine)

    def run(name, **kw):
        settings = {"response_params": SAMPLING, "max_tokens": 200, "seed": 11, **kw}
        job = ConversationJob(
            profile,
            smol_engine.tokenizer,
            tmp_path / f"{name}.json",
            model_name="smol",
            instruction_params=SAMPLING,
            **settings,
        )
        job.run(smol_engine)
        return read_records(tmp_path / f"{name}.json")

    only = run("only", total=3, only_instruction=True, n_turns=3)
    assert all(
        set(r) >= {"instruction", "model_name"} and "response" not in r and "conversation" not in r
        for r in only
    )

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"topic": "a"}\n{"topic": "b", "system_prompt": "You are a pirate."}\n')
    single = run(
        "single",
        input_file=rows,
        include_system_prompt=True,
        system_prompts=parse({"teacher": "You are a teacher.", "chef": "You are a chef."}),
    )
    assert single[1]["system_prompt"] == "You are a pirate."  # the row's own wins
    assert single[1]["system_prompt_key"] is None
    assert single[0]["system_prompt_key"] in ("teacher", "chef")
    assert single[0]["topic"] == "a"  # input columns are kept
    for r in single:
        assert "instruction" in r and "response" in r and r["model_name"] == "smol"

    # The response stages' setting for the embedded model (frequency penalty 0.3, room
    # to finish): seeded, so the same conversations finish on every run.
    ended = run(
        "ended",
        total=3,
        n_turns=2,
        end_with_user=True,
        include_system_prompt=True,
        response_params=FINISHING,
        max_tokens=400,
    )
    finished = [r for r in ended if r["conversation_stop_reason"] is None]
    assert finished, [r["conversation_stop_reason"] for r in ended]  # the check below runs
    for r in ended:
        conv = r["conversation"]
        assert conv[0] == {"role": "system", "content": MULTI_TURN_SYSTEM_PROMPT}
    for r in finished:  # two turns, the last one the user's: it ends on the user turn
        conv = r["conversation"]
        assert [m["role"] for m in conv[1:]] == ["user", "assistant", "user"]
        assert all(m["content"].strip() for m in conv[1:])


def test_seeded_choices_and_sampling_reproduce(smol_engine, tmp_path):
    from magpie.multiturn import ConversationJob

    spec = parse_system_prompts(["You are a poet.", "You are a lawyer.", "You are a nurse."])
    outs = []
    for k in range(2):
        job = ConversationJob(
            smol_profile(smol_engine),
            smol_engine.tokenizer,
            tmp_path / f"r{k}.json",
            model_name="smol",
            total=4,
            only_instruction=True,
            include_system_prompt=True,
            system_prompts=spec,
            instruction_params=SAMPLING,
            response_params=SAMPLING,
            max_tokens=48,
            seed=99,
        )
        job.run(smol_engine)
        outs.append(
            [(r["system_prompt"], r["instruction"]) for r in read_records(tmp_path / f"r{k}.json")]
        )
    assert outs[0] == outs[1]


def test_resume_uses_journaled_turns(tiny_model_dir, tmp_path):
    """A journal left by a kill (with a torn last line) is replayed, not regenerated."""
    from magpie.engines.hf import HFEngine
    from magpie.multiturn import MultiTurnJob
    from magpie.profiles import get_profile

    engine = HFEngine(str(tiny_model_dir), batch_size=4, seed=0)
    profile = get_profile(str(tiny_model_dir), engine.tokenizer)
    src = tmp_path / "x.json"
    src.write_text(
        json.dumps(
            [{"instruction": "Q1", "response": "A1"}, {"instruction": "Q2", "response": "A2"}]
        )
    )
    out = tmp_path / "x_mt.json"

    def job():
        return MultiTurnJob(
            profile,
            engine.tokenizer,
            src,
            out,
            model_name="tiny",
            num_turns=2,
            instruction_params={"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0},
            response_params={"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0},
            max_tokens=4,
            seed=1,
        )

    first = job()
    header = json.dumps({"__journal__": first.journal.fingerprint})
    first.journal.close()
    lines = [
        header,
        json.dumps(
            {
                "key": "0/0",
                "record": {"role": "user", "content": "FOLLOW-UP", "failure": None, "turn": 2},
            }
        ),
        json.dumps(
            {
                "key": "0/1",
                "record": {"role": "assistant", "content": "REPLY", "failure": None, "turn": 2},
            }
        ),
    ]
    state_path(out, ".journal.jsonl").write_text("\n".join(lines) + '\n{"key": "1/0", "rec')
    job().run(engine)
    records = read_records(out)
    assert records[0]["instruction_2"] == "FOLLOW-UP" and records[0]["response_2"] == "REPLY"
    assert records[0]["conversation_stop_reason"] is None
    # Record 1 was generated now: a random model never closes its turn in 4 tokens.
    assert records[1]["conversation_stop_reason"] == "instruction 2 unfinished"
    assert [m["content"] for m in records[1]["conversation"]] == ["Q2", "A2"]


@pytest.mark.parametrize("processor", [None, "de_markdown"])
def test_one_pass_user_turns_take_the_first_token_processor(smol_tokenizer, tmp_path, processor):
    """A model biased to open every turn with '#' (and then to end it): --logits_processor
    stops that in user turns (the instructions) and leaves assistant turns alone."""
    import torch
    from conftest import tiny_llama

    from magpie.engines.hf import HFEngine
    from magpie.logits import first_token_processor
    from magpie.multiturn import ConversationJob
    from magpie.profiles import get_profile

    assert first_token_processor(logits_processor=True) == "de_markdown"
    with pytest.raises(InputError, match="cannot be used together"):
        first_token_processor(True, True)
    model = tiny_llama(smol_tokenizer)
    hash_id = smol_tokenizer.convert_tokens_to_ids("#")
    end_id = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")

    def bias(module, inputs, out):  # a prefill (many positions) picks the first token
        favourite = hash_id if out.shape[1] > 1 else end_id
        return out.index_add(-1, torch.tensor([favourite]), torch.full((*out.shape[:-1], 1), 100.0))

    model.lm_head.register_forward_hook(bias)
    engine = HFEngine("tiny", model=model, tokenizer=smol_tokenizer, batch_size=4)
    greedy = {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0}
    job = ConversationJob(
        get_profile("tiny", smol_tokenizer),
        smol_tokenizer,
        tmp_path / "conv.json",
        model_name="tiny",
        total=2,
        n_turns=1,
        early_stopping=False,
        instruction_params={**greedy, "logits_processor": processor},
        response_params=greedy,
        max_tokens=3,
    )
    job.run(engine)
    records = read_records(tmp_path / "conv.json")
    assert len(records) == 2  # the checks below run on both conversations
    for r in records:
        assert r["gen_input_configs"]["instruction"]["logits_processor"] == processor
        assert r["conversation_stop_reason"] is None
        assert r["instruction"].startswith("#") == (processor is None)
        assert r["response"] == "#"


def test_dated_templates_render_the_fixed_date_in_every_stage(smol_tokenizer):
    """gpt-oss's template asks strftime_now for today's date: stages render the fixed
    template date (as profiles do), so prompts do not change from one day to the next."""
    import copy

    from magpie.chat_template import assistant_turn_prompt, user_turn_prompt

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = (FIXTURES / "chat_templates" / "gpt-oss-minimal.jinja").read_text()
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    for prompt in (assistant_turn_prompt(tok, messages[:1]), user_turn_prompt(tok, messages)):
        assert "Current date: 2024-07-26" in prompt
