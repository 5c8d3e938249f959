"""Tagging without models: missions and names, input formats, prompts, parsing, label
checks, the JSON schemas under xgrammar, Llama Guard verdicts, lingua."""

from __future__ import annotations

import pytest

from magpie.records import InputError
from magpie.tagging import GROUPS, MISSIONS, expand, output_file
from magpie.tagging.guard import parse_verdict
from magpie.tagging.inputs import conversation_of
from magpie.tagging.job import annotate
from magpie.tagging.llm import parse_answer
from magpie.tagging.prompts import mission_prompt
from magpie.tagging.schemas import (
    DIFFICULTY,
    FIELDS,
    QUALITY,
    SCHEMAS,
    TASK_CATEGORIES,
    LabelError,
    fields_from_answer,
)

# -------------------------------------------------------------- missions and file names


def test_groups_keep_the_original_order_with_sample_quality_after_quality():
    assert expand("all") == [
        "difficulty",
        "quality",
        "sample_quality",
        "classification",
        "safety",
        "reward",
        "language",
    ]
    assert expand("magpie") == ["quality", "sample_quality", "difficulty"]
    assert expand("safety") == ["safety"]
    assert set(GROUPS["all"]) == set(MISSIONS) == set(FIELDS)
    with pytest.raises(InputError, match="unknown tag mission 'qualty'"):
        expand("qualty")


def test_output_names_keep_the_original_suffix_chain(tmp_path):
    x = tmp_path / "Magpie_x_ins_res.json"
    names = []
    current = x
    for mission in ("difficulty", "quality", "classification", "safety", "reward", "language"):
        current = output_file(current, mission)
        names.append(current.name)
    assert names[-1] == ("Magpie_x_ins_res_difficulty_quality_category_safety_reward_language.json")
    # jsonl chains keep jsonl (the original's script reused the input's extension).
    assert output_file(tmp_path / "a.json", "sample_quality", "jsonl").name == (
        "a_sample_quality.jsonl"
    )
    with pytest.raises(InputError, match="save_as"):
        output_file(x, "quality", "csv")


# ------------------------------------------------------------------------- input formats

FORMATS = {
    "magpie": {"instruction": "Hi?", "response": "Hello."},
    "magpie_mt": {
        "instruction": "Q1",
        "response": "A1",
        "instruction_2": "Q2",
        "response_2": "A2",
    },
    "input_output": {"input": "Hi?", "output": "Hello."},
    "messages": {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."},
        ]
    },
    "conversation": {
        "conversation": [
            {"role": "user", "content": [{"type": "text", "text": "Hi?"}]},
            {"role": "assistant", "content": "Hello."},
        ]
    },
    "sharegpt": {
        "conversations": [
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "A1"},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "A2"},
        ]
    },
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_input_format_gives_its_conversation(name):
    conv, reason = conversation_of(FORMATS[name])
    assert reason is None
    multi = name in ("magpie_mt", "sharegpt")
    assert conv.first_user == ("Q1" if multi else "Hi?")
    assert conv.multi_turn is multi
    assert conv.has_response
    roles = [m["role"] for m in conv.messages()]
    assert roles == (["user", "assistant"] * (2 if multi else 1))
    if multi:
        assert [tuple(t[:2]) for t in conv.first_exchange().turns] == [
            ("user", "Q1"),
            ("assistant", "A1"),
        ]
        assert "[User]\nQ2" in conv.transcript()


@pytest.mark.parametrize(
    "record, why",
    [
        ({"instruction": ""}, "'instruction' is missing or empty"),
        ({"instruction": None, "response": None}, "'instruction' is missing or empty"),
        ({"input": "  "}, "'input' is missing or empty"),
        ({"id": 3}, "no conversations, messages"),
        ({"messages": "hello"}, "'messages' is not a list"),
        ({"conversations": [{"from": "gpt", "value": "A"}]}, "no user turn"),
    ],
)
def test_records_without_usable_text_get_a_reason(record, why):
    conv, reason = conversation_of(record)
    assert conv is None and reason.startswith("no_text: ") and why in reason


def test_instruction_without_response_is_a_conversation_without_answer():
    conv, _ = conversation_of({"instruction": "Hi?", "response": None})
    assert [(t.role, t.text) for t in conv.turns] == [("user", "Hi?")]
    assert not conv.has_response


def test_messages_alternate_for_guard_and_reward_templates():
    conv, _ = conversation_of(
        {
            "messages": [
                {"role": "assistant", "content": "Welcome!"},
                {"role": "user", "content": "a"},
                {"role": "tool", "content": "ignored"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        }
    )
    assert conv.messages() == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
    ]


def test_multi_turn_prompts_judge_the_transcript_or_the_first_turn():
    conv, _ = conversation_of(FORMATS["sharegpt"])
    for mission in ("quality", "sample_quality", "safety"):
        prompt = mission_prompt(mission, conv)
        assert "Q2" in prompt and "A2" in prompt
    for mission in ("difficulty", "classification"):
        prompt = mission_prompt(mission, conv)
        assert "Q1" in prompt and "Q2" not in prompt and "A1" not in prompt
    single, _ = conversation_of(FORMATS["magpie"])
    assert "Hello." in mission_prompt("sample_quality", single)
    assert "Hello." not in mission_prompt("quality", single)
    assert all(c in mission_prompt("classification", single) for c in TASK_CATEGORIES)


# --------------------------------------------------------------- parsing and label checks


@pytest.mark.parametrize(
    "text",
    [
        '{"explanation": "ok", "input_quality": "good"}',
        'Sure! ```json\n{"explanation": "ok {x}", "input_quality": "good"}\n``` done',
        '{"explanation": "ok", "input_quality": "good"',  # closing brace missing
        'explanation: "ok", "input_quality": "good", and more',  # salvage
    ],
)
def test_lenient_parsing_reads_what_it_can(text):
    answer = parse_answer(text, ["explanation", "input_quality"])
    assert answer["input_quality"] == "good"


def test_unparseable_answers_are_a_reason():
    with pytest.raises(LabelError, match="^unparseable"):
        parse_answer("I think it is good.", ["input_quality"])


def test_answers_map_to_original_fields_and_labels_are_checked():
    assert fields_from_answer(
        "difficulty", {"intent": " a ", "knowledge": "b", "difficulty": "Very Hard"}
    ) == {"intent": "a", "knowledge": "b", "difficulty": "very hard"}
    assert fields_from_answer("quality", {"explanation": "e", "input_quality": "poor"}) == {
        "input_quality": "poor",
        "quality_explanation": "e",
    }
    assert fields_from_answer("sample_quality", {"explanation": "e", "score": "4"}) == {
        "sample_quality": 4,
        "sample_quality_explanation": "e",
    }
    assert fields_from_answer(
        "classification",
        {"primary_tag": "math", "other_tags": ["Reasoning", "Math", "Reasoning", "Other"]},
    ) == {"task_category": "Math", "other_task_category": ["Reasoning", "Others"]}
    assert fields_from_answer("safety", {"verdict": "safe"}) == {"llama_guard_2": "safe"}
    assert fields_from_answer("safety", {"verdict": "unsafe", "category": "s10"}) == {
        "llama_guard_2": "unsafe\nS10"
    }
    bad = [
        ("difficulty", {"intent": "a", "knowledge": "b", "difficulty": "extreme"}),
        ("quality", {"explanation": "e", "input_quality": 5}),
        ("quality", {"input_quality": "good"}),
        ("sample_quality", {"explanation": "e", "score": 6}),
        ("sample_quality", {"explanation": "e", "score": True}),
        ("classification", {"primary_tag": "Cooking", "other_tags": []}),
        ("classification", {"primary_tag": "Math", "other_tags": ["Cooking"]}),
        ("safety", {"verdict": "unsafe", "category": "S99"}),
        ("safety", {"verdict": "maybe"}),
    ]
    for mission, answer in bad:
        with pytest.raises(LabelError, match="^invalid_label"):
            fields_from_answer(mission, answer)


def test_schemas_hold_the_vocabularies_as_enums():
    props = SCHEMAS["difficulty"]["properties"]
    assert props["difficulty"]["enum"] == list(DIFFICULTY)
    assert SCHEMAS["quality"]["properties"]["input_quality"]["enum"] == list(QUALITY)
    tags = SCHEMAS["classification"]["properties"]
    assert tags["primary_tag"]["enum"] == tags["other_tags"]["items"]["enum"]
    assert tags["primary_tag"]["enum"] == list(TASK_CATEGORIES)


def test_xgrammar_accepts_vocabulary_labels_and_refuses_others(smol_tokenizer):
    import xgrammar  # noqa: F401  (a dependency: a broken install fails, never skips)

    from magpie.grammar import JsonSchemaGrammar

    grammar = JsonSchemaGrammar(smol_tokenizer, len(smol_tokenizer))
    cases = {
        "quality": ('{"explanation": "ok", "input_quality": "good"}', '"input_quality": "fine"'),
        "sample_quality": ('{"explanation": "ok", "score": 5}', '"score": 6'),
        "classification": (
            '{"primary_tag": "Coding & Debugging", "other_tags": ["Math"]}',
            '"other_tags": ["Cooking"',
        ),
        "safety": ('{"verdict": "unsafe", "category": "S2"}', '"category": "S12"'),
    }
    for mission, (good, bad) in cases.items():
        matcher = grammar.matcher(SCHEMAS[mission])
        assert matcher.accept_string(good), mission
        prefix = good[: good.index(bad.split(":")[0])]
        matcher = grammar.matcher(SCHEMAS[mission])
        assert not matcher.accept_string(prefix + bad), mission


def test_guard_verdicts_in_llama_guard_form_only():
    assert parse_verdict("safe") == "safe"
    assert parse_verdict("\n\nsafe\n") == "safe"
    assert parse_verdict("unsafe\nS2") == "unsafe\nS2"
    assert parse_verdict("unsafe\nS1, S10") == "unsafe\nS1,S10"
    for text in ("", "unsafe", "unsafe\nviolence", "I cannot help"):
        with pytest.raises(ValueError, match="^guard_output"):
            parse_verdict(text)


def test_annotate_sets_fields_and_keeps_one_reason_per_mission():
    record = {"instruction": "x", "tag_errors": {"quality": "unparseable: ..."}}
    failed = annotate(record, "difficulty", {"difficulty_generator": "m"}, "truncated: ...")
    assert failed["difficulty"] is None and failed["difficulty_generator"] == "m"
    assert failed["tag_errors"] == {"quality": "unparseable: ...", "difficulty": "truncated: ..."}
    fixed = annotate(failed, "quality", {"input_quality": "good"}, None)
    assert fixed["input_quality"] == "good" and fixed["tag_errors"] == {
        "difficulty": "truncated: ..."
    }
    clean = annotate(fixed, "difficulty", {"difficulty": "easy"}, None)
    assert "tag_errors" not in clean and clean["instruction"] == "x"


# ------------------------------------------------------------------------------- lingua


def test_lingua_detects_english_chinese_french_and_null_for_nothing():
    from magpie.tagging.language import detect_languages

    assert detect_languages(
        [
            "What is the capital of France?",
            "请帮我写一首关于春天的诗。",
            "Quelle est la capitale de la France ?",
            "",
            "   ",
            "12345 + 678",
        ]
    ) == ["EN", "ZH", "FR", None, None, None]


# ----------------------------------------------- reasoning models: the final answer only


class _CannedEngine:
    """An engine that answers every prompt with one fixed text (what a reasoning model
    sent back); `constrained` says whether it claims to decode to the schema."""

    name = "canned"

    def __init__(self, tokenizer, text: str, constrained: bool):
        self.tokenizer, self.text = tokenizer, text
        self.supports_json_schema = constrained
        self.prompts: list = []

    def stream(self, prompts, params, seeds=None):
        from magpie.engines.base import Completion

        self.prompts += list(prompts)
        for k in range(len(prompts)):
            yield k, [Completion(self.text, "stop")]


EASY = '{"intent": "prove it", "knowledge": "number theory", "difficulty": "easy"}'
HARD = '{"intent": "prove it", "knowledge": "number theory", "difficulty": "very hard"}'
DRAFT_THEN_ANSWER = [
    # issue 13: a draft inside the thoughts, then the real answer
    f"<think>maybe {EASY}...</think>{HARD}",
    # the template opened the thoughts in the prompt (DeepSeek-R1): only the close is seen
    f"maybe {EASY}...\n</think>\n\n{HARD}",
    # harmony, special tokens kept
    f"<|channel|>analysis<|message|>maybe {EASY}<|end|>"
    f"<|start|>assistant<|channel|>final<|message|>{HARD}<|return|>",
    # harmony, special tokens dropped by the engine
    f"analysisMaybe {EASY}.assistantfinal{HARD}",
]


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "prefilled"])
def test_the_json_reader_skips_the_thoughts_of_the_issue_example(constrained):
    from magpie.tagging.llm import json_text

    issue = '<think>maybe {"difficulty": "easy"}...</think>{"difficulty": "hard"}'
    assert parse_answer(json_text(issue, constrained), ["difficulty"]) == {"difficulty": "hard"}


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "prefilled"])
@pytest.mark.parametrize("text", DRAFT_THEN_ANSWER)
def test_judge_answers_are_read_from_the_final_answer_not_a_draft(
    smol_tokenizer, text, constrained
):
    from magpie.skills import read_rating
    from magpie.tagging.inputs import Conversation
    from magpie.tagging.llm import LLMTagger

    engine = _CannedEngine(smol_tokenizer, text, constrained)
    tagger = LLMTagger(engine, "canned")
    conv = Conversation([("user", "Prove Fermat's last theorem."), ("assistant", "...")])
    ((key, fields, reason),) = list(tagger.tag("difficulty", [(7, conv)]))
    assert (key, reason) == (7, None)
    assert fields["difficulty"] == "very hard"
    # The skills judge reads its answers with the same reader.
    judged = text.replace(EASY, '{"explanation": "no", "rating": 0}').replace(
        HARD, '{"explanation": "ok", "rating": 1}'
    )
    assert read_rating(judged, [0, 1], constrained) == (1, None)


@pytest.mark.parametrize("constrained", [True, False])
def test_a_judge_still_thinking_has_no_answer(smol_tokenizer, constrained):
    from magpie.tagging.inputs import Conversation
    from magpie.tagging.llm import LLMTagger

    engine = _CannedEngine(smol_tokenizer, '<think>maybe {"difficulty": "easy"}', constrained)
    ((_, fields, reason),) = list(
        LLMTagger(engine, "canned").tag("difficulty", [(0, Conversation([("user", "Hi")]))])
    )
    assert fields.get("difficulty") is None
    assert reason.startswith("unparseable")


def test_harmony_judge_prompt_opens_the_final_channel_and_stops_at_return(smol_tokenizer):
    import copy
    from types import SimpleNamespace

    from conftest import FIXTURES

    from magpie.tagging.llm import json_prompt, turn_end_ids

    harmony_vocab = {"<|channel|>": 200005, "<|end|>": 200007, "<|return|>": 200002}
    harmony_vocab |= {"<|call|>": 200012, "<|start|>": 200006, "<|message|>": 200008}
    tok = SimpleNamespace(eos_token_id=200002, get_vocab=lambda: harmony_vocab)
    # <|end|> only closes the analysis message of a harmony answer
    assert turn_end_ids(tok) == [200002, 200012]
    phi3 = SimpleNamespace(eos_token_id=32000, get_vocab=lambda: {"<|end|>": 32007})
    assert turn_end_ids(phi3) == [32000, 32007]  # a real end of turn elsewhere

    harmony = copy.deepcopy(smol_tokenizer)
    harmony.chat_template = (FIXTURES / "chat_templates" / "gpt-oss-minimal.jinja").read_text()
    prompt = json_prompt(harmony, "Rate this.", constrained=False)
    assert prompt.endswith(
        "<|start|>user<|message|>Rate this.<|end|><|start|>assistant<|channel|>final<|message|>{"
    )
    assert json_prompt(harmony, "Rate this.", constrained=True).endswith("final<|message|>")
    assert json_prompt(smol_tokenizer, "Rate this.", constrained=False).endswith(
        "<|im_start|>assistant\n{"
    )


def test_code_has_no_language_and_says_why_while_short_english_stays_en(tmp_path):
    # Issue 13: print(sum(range(10))) was tagged XH (Xhosa) and strict-en then dropped it.
    from magpie.tagging.inputs import Conversation
    from magpie.tagging.language import TOO_LITTLE, LanguageTagger, detect_language

    texts = [
        "print(sum(range(10)))",
        "x = [i**2 for i in range(5)]",
        "Write a haiku about autumn.",
        "Fix my code",
        "Explain what print(sum(range(10))) prints.",  # English around code: its English
        "¿Cuál es la capital de Francia?",
        "Andika shairi kuhusu vuli.",  # Swahili, as short: lingua is sure of it
    ]
    found = detect_language(texts)
    assert found[:2] == [(None, TOO_LITTLE)] * 2
    # lingua alone says Swahili for the haiku (17% against English's 12%)
    assert found[2:] == [("EN", None), ("EN", None), ("EN", None), ("ES", None), ("SW", None)]

    items = [(k, Conversation([("user", t)])) for k, t in enumerate(texts[:3])]
    out = {k: (fields, reason) for k, fields, reason in LanguageTagger().tag("language", items)}
    assert out[0] == ({"language": None}, "too little natural language")
    assert out[2] == ({"language": "EN"}, None)


def test_strict_en_preset_documents_how_null_languages_are_treated():
    from conftest import REPO

    preset = (REPO / "configs" / "filters" / "strict-en.yaml").read_text()
    comment = preset.split("language: [EN]")[0].rsplit("\n\n", 1)[-1]
    assert "null" in comment and "dropped" in comment
    assert "too little natural language" in comment
    readme = (REPO / "README.md").read_text()
    assert "too little natural language" in readme and "strict-en.yaml" in readme
