"""Cases for the judge tests (tests/preference/test_judge*.py and tests/vllm_cpu/test_vllm_judge.py):
answers of graded quality, clearly good and clearly bad ones, and the judge's prompt as
the tests read its contract. No conftest import: tests/vllm_cpu has a conftest of its own."""

from __future__ import annotations

from magpie.judge import RUBRIC

# Four instructions, five answers each, from right and full to empty-ish or off-topic.
VARIED = [
    (
        "How do I make a cup of tea?",
        [
            "Boil water, pour it over a tea bag in a cup, steep for three to five minutes, "
            "remove the bag, and add milk or sugar if you like.",
            "Put a tea bag in hot water.",
            "Tea is a drink.",
            "I prefer coffee, honestly.",
            "The French Revolution began in 1789.",
        ],
    ),
    (
        "What is the largest planet in the solar system?",
        [
            "Jupiter is the largest planet in the solar system; it is more than 300 times "
            "as massive as Earth.",
            "Jupiter.",
            "Saturn is the largest planet.",
            "Planets are big.",
            "My cat sleeps all day.",
        ],
    ),
    (
        "Write a sentence using the word 'gentle'.",
        [
            "The nurse spoke in a gentle voice to calm the frightened child.",
            "She was gentle.",
            "Gentle.",
            "The word is a word.",
            "Quarterly earnings rose by four percent.",
        ],
    ),
    (
        "Give me two ways to save money on groceries.",
        [
            "Plan your meals for the week and shop with a list, and buy store brands "
            "instead of name brands.",
            "Use coupons and buy in bulk.",
            "Buy less.",
            "Groceries are food.",
            "The Eiffel Tower is in Paris.",
        ],
    ),
]

# A clearly good answer and a clearly bad one (empty-ish, off-topic, wrong), written for
# this test (not the ones the rubric was worded on).
GOOD_BAD = [
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue.", "Pizza."),
    ("How many days are in a week?", "There are seven days in a week.", "Eleven."),
    (
        "Name an animal that lives in the ocean.",
        "Dolphins live in the ocean.",
        "I do not like Mondays.",
    ),
    ("What is 10 divided by 2?", "10 divided by 2 is 5.", "?"),
    (
        "Suggest a title for a story about a lost dog.",
        "'The Long Way Home': a lost dog's journey back to its family.",
        "The stock exchange opens at nine.",
    ),
    (
        "What language is spoken in Brazil?",
        "Portuguese is the official and most widely spoken language of Brazil.",
        "-",
    ),
    (
        "Write a greeting for a birthday card.",
        "Happy birthday! Wishing you a wonderful year ahead.",
        "Refrigerators use electricity.",
    ),
    (
        "What do bees make?",
        "Bees make honey from the nectar of flowers, and also beeswax.",
        "The train was late again.",
    ),
    ("Spell the word 'cat' backwards.", "Backwards, 'cat' is 'tac'.", "Dog."),
    (
        "Why do we need sleep?",
        "Sleep lets the body recover and the brain store memories; without it, attention "
        "and health suffer.",
        "Bananas are rich in potassium.",
    ),
]


def records_of(cases) -> list[dict]:
    return [
        {"uuid": f"u{i}", "instruction": q, "responses": list(answers)}
        for i, (q, answers) in enumerate(cases)
    ]


def judge_text(tok, instruction: str, response: str) -> str:
    """The judge's prompt as this test reads its contract: the chat template over the
    rubric, the assistant's turn opened with "Rating: "."""
    content = RUBRIC.format(instruction=instruction, response=response)
    return (
        tok.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        + "Rating: "
    )
