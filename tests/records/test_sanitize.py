"""Tests for magpie.sanitize: prefix removal, style choice, every rule/class, fixed bugs."""

from __future__ import annotations

import pytest

from magpie.sanitize import instruction_post_process, remove_prefix, sanitize_style

LLAMA = "meta-llama/Meta-Llama-3-8B-Instruct"
GEMMA = "google/gemma-2-9b-it"
GEMMA_11 = "google/gemma-1.1-7b-it"
GENERIC = "Qwen/Qwen2.5-7B-Instruct"

GEMMA_CLASSES = {1, 2.1, 2.2, 3, 4, 5.1, 5.2, 5.3, 6.1, 6.2}
LLAMA_CLASSES = {1, 2.1, 2.2, 3, 4, 5, 6.1, 6.2, 6.3, 99.1, 99.2}

PREFIX_WORDS = [
    "Task",
    "Prompt",
    "Original Prompt",
    "Question",
    "The Problem",
    "Problem",
    "Scenario",
    "The senario",
    "The scenario",
    "Situation",
    "The situation",
    "Context",
    "Challenge",
    "Query",
    "Request",
    "Instructions",
    "Instruction",
    "Descriptions",
    "Description",
]

BODY = "Write a haiku about autumn leaves."


# --- remove_prefix -------------------------------------------------------------------------


@pytest.mark.parametrize("word", PREFIX_WORDS)
@pytest.mark.parametrize("form", ["{w}:", "**{w}**", "## {w}:", "**{w}:**", "**{w}**:"])
def test_remove_prefix_every_word_and_variant(word: str, form: str) -> None:
    assert remove_prefix(f"{form.format(w=word)} {BODY}") == BODY


@pytest.mark.parametrize(
    "prefixed",
    [
        "Task: " + BODY,
        "task: " + BODY,
        "TASK:" + BODY,
        "**Task** " + BODY,
        "## Task: " + BODY,
        "# Task:\n" + BODY,
        "### Task\n" + BODY,
        "Question 3: " + BODY,
        "Question 12. " + BODY,
        "**Question 3:** " + BODY,
        "Q2. " + BODY,
        "Q2: " + BODY,
        "q7: " + BODY,
        "Part 1: " + BODY,
        "  Task:   " + BODY + "  ",
    ],
)
def test_remove_prefix_variants(prefixed: str) -> None:
    assert remove_prefix(prefixed) == BODY


@pytest.mark.parametrize("marker", ["1.", "12.", "1)", "a)", "A.", "b.", "(a)", "(B)", "(3)"])
def test_remove_prefix_list_markers(marker: str) -> None:
    assert remove_prefix(f"{marker} {BODY}") == BODY


@pytest.mark.parametrize(
    "text",
    [
        "Python) is my favourite language. How do I learn it?",
        "Hello) there, can you help me?",
        "3.14 is an approximation of pi. Why is pi irrational?",
        "e.g. apples and pears are fruits. Name three more.",
        "Taskmaster is a TV show. Describe its format.",
        "Problems in physics often need calculus. Give an example.",
        "Q2 earnings rose by 5%. Explain why.",
        "A cat sat on the mat. Continue the story.",
    ],
)
def test_remove_prefix_leaves_ordinary_text(text: str) -> None:
    assert remove_prefix(text) == text


def test_remove_prefix_repeats_until_stable() -> None:
    assert remove_prefix("1. Task: Question: " + BODY) == BODY
    assert remove_prefix("**Context:** (a) " + BODY) == BODY
    assert remove_prefix(remove_prefix("1. Task: " + BODY)) == BODY


def test_remove_prefix_empty() -> None:
    assert remove_prefix("") == ""
    assert remove_prefix("Task:") == ""


# --- sanitize_style ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_path", "style"),
    [
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3"),
        ("meta-llama/Meta-Llama-3-70B-Instruct", "llama-3"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3"),
        ("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "llama-3"),
        ("meta-llama/Llama-3.2-1B-Instruct", "llama-3"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3"),
        ("/models/llama3-8b-instruct.gguf", "llama-3"),
        ("google/gemma-2-9b-it", "gemma"),
        ("google/gemma-2-27b-it", "gemma"),
        ("google/gemma-1.1-7b-it", "gemma"),
        ("google/gemma-1.1-2b-it", "gemma"),
        ("google/gemma-7b-it", "gemma"),
        ("google/gemma-3-4b-it", "gemma"),
        ("Qwen/Qwen2.5-7B-Instruct", "generic"),
        ("meta-llama/Llama-2-7b-chat-hf", "generic"),
        ("huggyllama/llama-30b", "generic"),
        ("openlm-research/open_llama_3b", "generic"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "generic"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "generic"),
        ("", "generic"),
    ],
)
def test_sanitize_style(model_path: str, style: str) -> None:
    assert sanitize_style(model_path) == style


# --- one test per rule and class, both styles ----------------------------------------------

# (raw instruction, expected text, gemma class, llama-3/generic class)
RULE_CASES = [
    pytest.param(
        "**What is the capital of France?** The capital of France is Paris.",
        "What is the capital of France?",
        1,
        1,
        id="1-bold-question",
    ),
    pytest.param(
        "* **Question:** How do vaccines train the immune system?\n* **Answer:** ...",
        "How do vaccines train the immune system?",
        1,
        1,
        id="1-bullet-question-with-label",
    ),
    pytest.param(
        '"What is the boiling point of water at sea level?" asked the student.',
        "What is the boiling point of water at sea level?",
        2.1,
        2.1,
        id="2.1-quoted-question",
    ),
    pytest.param(
        '"Write a *short* story about a lighthouse keeper."\nOnce upon a time...',
        "Write a short story about a lighthouse keeper.",
        2.2,
        2.2,
        id="2.2-quoted-request",
    ),
    pytest.param(
        "<b>Summarize the plot of *Hamlet* in three sentences.</b>\nHamlet is a tragedy...",
        "Summarize the plot of Hamlet in three sentences.",
        3,
        3,
        id="3-html-bold",
    ),
    pytest.param(
        "**Question:** What is 2+2? Answer: 4",
        "What is 2+2?",
        4,
        4,
        id="4-answer-marker",
    ),
    pytest.param(
        "**Translate** the sentence 'good morning' into Spanish.\nSolution: Buenos días.",
        "Translate the sentence 'good morning' into Spanish.",
        4,
        4,
        id="4-solution-marker-unbold",
    ),
    pytest.param(
        "Which planet is known as the Red Planet?\n(A) Venus (B) Mars\nThe correct answer: B",
        "Which planet is known as the Red Planet?\n(A) Venus (B) Mars",
        4,
        4,
        id="4-correct-answer-marker",
    ),
    pytest.param(
        "Solve for x: 2x + 3 = 11 and show your work\n\n## Step 1: Subtract 3 from both sides",
        None,  # style-dependent, checked separately
        None,
        5,
        id="5-step-marker",
    ),
    pytest.param(
        "Solve the following system of equations:\nx + y = 10\nx - y = 2\n## Solution\nx = 6",
        "Solve the following system of equations:\nx + y = 10\nx - y = 2",
        5.1,
        6.1,
        id="colon-heading",
    ),
    pytest.param(
        "Consider this scenario:\nA train leaves at 3pm at 60 mph. When does it arrive?\nAt 5pm.",
        "Consider this scenario:\nA train leaves at 3pm at 60 mph. When does it arrive?",
        5.2,
        6.2,
        id="colon-question",
    ),
    pytest.param(
        "Write a C# function that does the following:\n1. reads a *file*\n2. counts its lines",
        "Write a C# function that does the following:",
        5.3,
        6.3,
        id="colon-first-line",
    ),
    pytest.param(
        "How do I reverse a linked list in Python? I tried recursion, but it overflows.",
        "How do I reverse a linked list in Python?",
        6.1,
        99.1,
        id="fallback-question",
    ),
    pytest.param(
        "Write a short poem about the *sea*.\nThe sea is vast and blue,",
        "Write a short poem about the sea.",
        6.2,
        99.2,
        id="fallback-first-line",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected", "gemma_cls", "llama_cls"),
    [case for case in RULE_CASES if case.values[2] is not None],
)
def test_rules_gemma(raw: str, expected: str, gemma_cls: float, llama_cls: float) -> None:
    assert instruction_post_process(raw, GEMMA) == (expected, gemma_cls)


@pytest.mark.parametrize(("raw", "expected", "gemma_cls", "llama_cls"), RULE_CASES)
@pytest.mark.parametrize("model_path", [LLAMA, GENERIC])
def test_rules_llama3_and_generic(
    raw: str, expected: str | None, gemma_cls: float, llama_cls: float, model_path: str
) -> None:
    text, cls = instruction_post_process(raw, model_path)
    assert cls == llama_cls
    if expected is not None:
        assert text == expected


def test_step_rule_llama3_and_generic() -> None:
    raw = "Find the derivative of f(x) = x^3 + 2x.\n\n### Step 1: Apply the power rule"
    for model_path in (LLAMA, "meta-llama/Llama-3.1-8B-Instruct", GENERIC):
        assert instruction_post_process(raw, model_path) == (
            "Find the derivative of f(x) = x^3 + 2x.",
            5,
        )
    raw = "**Find the area of a circle of radius 3.**\n# Step 1 Use the formula"
    assert instruction_post_process(raw, LLAMA) == ("Find the area of a circle of radius 3.", 5)
    raw = "Compute 17 * 23 without a calculator\n## Step 1: Break it down"
    assert instruction_post_process(raw, LLAMA) == ("Compute 17 * 23 without a calculator", 5)


def test_step_rule_not_in_gemma_style() -> None:
    raw = "Find the derivative of f(x) = x^3 + 2x.\n\n## Step 1: Apply the power rule"
    assert instruction_post_process(raw, GEMMA) == ("Find the derivative of f(x) = x^3 + 2x.", 6.2)


def test_final_prefix_removal() -> None:
    # Rule 2.2 turns '"Task: ..."' into "Task: ...": only the final pass removes the label.
    assert instruction_post_process('"Task: Plan a 3-day trip to Rome."', LLAMA) == (
        "Plan a 3-day trip to Rome.",
        2.2,
    )
    assert instruction_post_process("Request: Plan a 3-day trip to Rome.", LLAMA) == (
        "Plan a 3-day trip to Rome.",
        99.2,
    )
    assert instruction_post_process("1. Question 2: Why is the sky blue?", GEMMA) == (
        "Why is the sky blue?",
        6.1,
    )


def test_class_number_sets() -> None:
    raws = [case.values[0] for case in RULE_CASES]
    assert {instruction_post_process(r, GEMMA)[1] for r in raws} == GEMMA_CLASSES
    assert {instruction_post_process(r, LLAMA)[1] for r in raws} == LLAMA_CLASSES


def test_integer_classes_stay_int() -> None:
    """JSON output matches the original: ``1``, not ``1.0``."""
    _, cls = instruction_post_process("**Is water wet?**", LLAMA)
    assert cls == 1 and isinstance(cls, int)


# --- empty input ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", " ", "\n\t  \n"])
@pytest.mark.parametrize("model_path", [LLAMA, GEMMA, GENERIC])
def test_empty_input(raw: str, model_path: str) -> None:
    assert instruction_post_process(raw, model_path) == ("", 0)


def test_non_empty_input_never_class_zero() -> None:
    for raw in ["x", "Task:", "?", "*", '"', "<b>"]:
        for model_path in (LLAMA, GEMMA, GENERIC):
            assert instruction_post_process(raw, model_path)[1] != 0


# --- regression tests for the fixed bugs ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Name the largest ocean on Earth. Answer: The Pacific.",
            "Name the largest ocean on Earth.",
        ),
        ("List two prime numbers. Answers: 2 and 3.", "List two prime numbers."),
        ("Why do leaves change colour in autumn? Explanation: ...", None),
        (
            "Sort [3, 1, 2] in ascending order. Solution: [1, 2, 3]",
            "Sort [3, 1, 2] in ascending order.",
        ),
        (
            "Sort [3, 1, 2] with merge sort. Solution Approach: split",
            "Sort [3, 1, 2] with merge sort.",
        ),
        ("Compute 6 * 7. The answer is: 42", "Compute 6 * 7."),
        ("Compute 6 * 7. Correct answer: 42", "Compute 6 * 7."),
        ("Compute 6 * 7. Correct answers: 42", "Compute 6 * 7."),
        ("Compute 6 * 7. Answer is: 42", "Compute 6 * 7."),
        ("Suggest names for a cat. Here are some: Tom, Kitty", "Suggest names for a cat."),
    ],
)
@pytest.mark.parametrize("model_path", [LLAMA, GEMMA])
def test_bug2_answer_markers_single_colon(raw: str, expected: str | None, model_path: str) -> None:
    text, cls = instruction_post_process(raw, model_path)
    assert cls == 4
    if expected is not None:
        assert text == expected


def test_bug2_markers_without_colon_need_one() -> None:
    # "The answer is 42" is not followed by a colon: no class-4 cut.
    raw = "Explain why the answer is 42 in The Hitchhiker's Guide\nIt is a joke."
    assert instruction_post_process(raw, LLAMA)[1] != 4
    # Matching is case-sensitive, as in the original.
    raw = "Explain what a correct answer: looks like in an exam\nmore"
    assert instruction_post_process(raw, LLAMA)[1] != 4


def test_bug3_b_tag_really_cleaned() -> None:
    raw = "<b>Describe the water cycle.</b>\nThe water cycle has four stages: **evaporation**..."
    for model_path in (LLAMA, GEMMA):
        assert instruction_post_process(raw, model_path) == ("Describe the water cycle.", 3)


@pytest.mark.parametrize(
    ("raw", "expected", "llama_cls"),
    [
        (
            "**Translate to French:** I love cheese. Answer: J'aime le fromage.",
            "Translate to French: I love cheese.",
            4,
        ),
        (
            "**Compute the integral of x dx**\n## Step 1: power rule",
            "Compute the integral of x dx",
            5,
        ),
    ],
)
def test_bug4_leading_bold_removed(raw: str, expected: str, llama_cls: float) -> None:
    # Starts with "**" and has no "?", so rule 1 does not apply; the cut rule must unbold.
    assert instruction_post_process(raw, LLAMA) == (expected, llama_cls)
    if llama_cls == 4:
        assert instruction_post_process(raw, GEMMA) == (expected, 4)


def test_bug4_unbold_at_index_zero_in_cut_rules() -> None:
    raw = "**Summarise the following text**:\nThe quick brown fox.\n# Summary\nA fox."
    assert instruction_post_process(raw, LLAMA) == (
        "Summarise the following text:\nThe quick brown fox.",
        6.1,
    )
    # Bold that does not open the text is left alone by the cut rules.
    raw = "Is **this** bold? yes"
    assert instruction_post_process(raw, LLAMA) == ("Is **this** bold?", 99.1)


def test_bug5_word_followed_by_paren_kept() -> None:
    raw = "Python) is my favourite language. How do I learn it fast?"
    assert remove_prefix(raw) == raw
    assert instruction_post_process(raw, LLAMA) == (
        "Python) is my favourite language. How do I learn it fast?",
        99.1,
    )
    assert instruction_post_process("a) How do I learn Python fast?", LLAMA) == (
        "How do I learn Python fast?",
        99.1,
    )


@pytest.mark.parametrize("model_path", [GEMMA_11, "google/gemma-7b-it", "google/gemma-3-1b-it"])
def test_bug12_all_gemma_versions_sanitised(model_path: str) -> None:
    assert sanitize_style(model_path) == "gemma"
    raw = "Question: What causes tides on Earth?\nAnswer: The Moon's gravity."
    assert instruction_post_process(raw, model_path) == ("What causes tides on Earth?", 4)
    raw = "Question: What causes tides on Earth? Think about the Moon."
    assert instruction_post_process(raw, model_path) == ("What causes tides on Earth?", 6.1)
    raw = "Write a limerick about a cat\nThere once was a cat"
    assert instruction_post_process(raw, model_path) == ("Write a limerick about a cat", 6.2)


def test_other_models_use_generic_rules() -> None:
    raw = "Question: What causes tides on Earth? Think about the Moon."
    assert instruction_post_process(raw, GENERIC) == ("What causes tides on Earth?", 99.1)
    assert instruction_post_process(raw, GENERIC) == instruction_post_process(raw, LLAMA)


# --- output shape and idempotence ----------------------------------------------------------

IDEMPOTENCE_SAMPLE = [
    "**Question:** What is 2+2? Answer: 4",
    "**What is the capital of France?** Paris.",
    '"What is the boiling point of water?" asked the student.',
    '"Write a haiku about autumn."\nLeaves fall',
    "<b>Summarize Hamlet.</b>\nHamlet is...",
    "Translate 'hello' into German. Answer: Hallo",
    "Find the derivative of x^2.\n## Step 1: power rule",
    "Write a C# function that does the following:\n1. reads a file",
    "Consider this:\nWhy is the sky blue?\nBecause of scattering.",
    "How do I reverse a list in Python? I tried slicing.",
    "1. Task: Write a limerick about a cat.\nThere once was",
    "## Problem: Prove that sqrt(2) is irrational.\n### Proof",
    "Python) is great. Why?",
    "Q3. **Name** three rivers in Africa.",
]


@pytest.mark.parametrize("raw", IDEMPOTENCE_SAMPLE)
@pytest.mark.parametrize("model_path", [LLAMA, GEMMA, GENERIC])
def test_idempotent(raw: str, model_path: str) -> None:
    once, _ = instruction_post_process(raw, model_path)
    twice, _ = instruction_post_process(once, model_path)
    assert twice == once


@pytest.mark.parametrize("raw", IDEMPOTENCE_SAMPLE + [c.values[0] for c in RULE_CASES])
@pytest.mark.parametrize("model_path", [LLAMA, GEMMA])
def test_output_stripped_and_prefix_free(raw: str, model_path: str) -> None:
    text, _ = instruction_post_process(" \n" + raw + " \n", model_path)
    assert text == text.strip()
    assert remove_prefix(text) == text


def test_multiline_answer_cut_keeps_the_text_to_work_on() -> None:
    raw = "Translate this:\nBonjour le monde\nAnswer: Hello world"
    assert instruction_post_process(raw, LLAMA) == ("Translate this:\nBonjour le monde", 4)


@pytest.mark.xfail(
    strict=True,
    reason="known defect (the original's rules too): sanitising a kept multi-line block "
    "whose first line ends with ':' applies the colon rule and drops the text to translate",
)
def test_sanitising_twice_keeps_a_multiline_instruction() -> None:
    once, _ = instruction_post_process("Translate this:\nBonjour le monde\nAnswer: Hi", LLAMA)
    assert instruction_post_process(once, LLAMA)[0] == once
