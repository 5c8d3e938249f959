"""The tagger's instructions, one per LLM mission (this project's own wording).

Each prompt states the JSON answer first and in full, then the material between clear
markers: fms-dgt found that putting the output contract first cut a small judge's
format failures from about half to a few percent. The JSON keys match
`magpie.tagging.schemas.SCHEMAS`.
"""

from __future__ import annotations

from magpie.conversation import Conversation
from magpie.tagging.schemas import SAFETY_CATEGORIES, TASK_CATEGORIES

DIFFICULTY = """You annotate requests that people send to an AI assistant.
Answer with a single JSON object and nothing else:
{{"intent": "...", "knowledge": "...", "difficulty": "..."}}
- "intent": one sentence, beginning "The user wants to", saying what the person is after.
- "knowledge": one sentence, beginning "To answer, one needs to know", naming the facts or skills required.
- "difficulty": how hard it is to give a good answer. Exactly one of: "very easy", "easy", "medium", "hard", "very hard".

<request>
{query}
</request>"""

QUALITY = """You annotate requests that people send to an AI assistant.
Answer with a single JSON object and nothing else:
{{"explanation": "...", "input_quality": "..."}}
- "explanation": one or two sentences on how clear, specific and coherent the request is.
- "input_quality": exactly one of these labels:
  "very poor": impossible to tell what is wanted; garbled, incoherent, or missing what is essential.
  "poor": the aim can be guessed, but the request is vague and needs a lot of clarification.
  "average": understandable, though some details or context would have to be assumed.
  "good": clear and specific; little is left to guess.
  "excellent": precise and well written, with all the context an answer needs.
Judge the request itself, not how hard it is.

<request>
{query}
</request>"""

QUALITY_MULTI_TURN = """You annotate conversations between a person and an AI assistant.
Answer with a single JSON object and nothing else:
{{"explanation": "...", "input_quality": "..."}}
- "explanation": one or two sentences on how clear, specific and coherent the person's messages are, taken together.
- "input_quality": exactly one of these labels:
  "very poor": impossible to tell what is wanted; garbled, incoherent, or missing what is essential.
  "poor": the aims can be guessed, but the messages are vague and need a lot of clarification.
  "average": understandable, though some details or context would have to be assumed.
  "good": clear and specific; little is left to guess.
  "excellent": precise and well written, with all the context the answers need.
Judge only the person's messages; the assistant's turns are there for context.

<conversation>
{transcript}
</conversation>"""

_CATEGORY_NOTES = {
    "Information seeking": "wants facts, definitions or explanations about a subject",
    "Reasoning": "logic, puzzles, or working something out step by step",
    "Planning": "schedules, strategies, or the steps towards a goal",
    "Editing": "rewriting, correcting, shortening or restyling a given text",
    "Coding & Debugging": "writing, explaining, reviewing or fixing code",
    "Math": "calculations, equations, proofs, quantitative problems",
    "Role playing": "the assistant should act as a character or persona",
    "Data analysis": "reading or interpreting data, tables or statistics",
    "Creative writing": "stories, poems, lyrics, scripts and other imaginative text",
    "Advice seeking": "personal, professional or practical advice",
    "Brainstorming": "many ideas, names or options",
    "Others": "fits none of the categories above",
}
assert tuple(_CATEGORY_NOTES) == TASK_CATEGORIES

CLASSIFICATION = (
    """You sort requests that people send to an AI assistant into task categories.
Answer with a single JSON object and nothing else:
{{"primary_tag": "...", "other_tags": ["..."]}}
- "primary_tag": the one category that fits the request best.
- "other_tags": up to three further categories that also apply; [] when none do.
Use only these category names, spelled exactly as written:
"""
    + "\n".join(f'- "{name}": {note}' for name, note in _CATEGORY_NOTES.items())
    + """

<request>
{query}
</request>"""
)

SAMPLE_QUALITY = """You grade how well an AI assistant answered a request.
Answer with a single JSON object and nothing else:
{{"explanation": "...", "score": N}}
- "explanation": one or two sentences on the answer's correctness, helpfulness and clarity.
- "score": a whole number from 1 to 5:
  1: wrong, off-topic, harmful, or no real answer.
  2: mostly unhelpful, or with serious mistakes.
  3: partly helpful; noticeable gaps or errors.
  4: helpful and correct, with small flaws.
  5: excellent: correct, complete and clearly written.

<request>
{query}
</request>

<answer>
{response}
</answer>"""

SAMPLE_QUALITY_MULTI_TURN = """You grade how well an AI assistant handled a conversation.
Answer with a single JSON object and nothing else:
{{"explanation": "...", "score": N}}
- "explanation": one or two sentences on the correctness, helpfulness and clarity of the assistant's turns.
- "score": a whole number from 1 to 5:
  1: wrong, off-topic, harmful, or no real answers.
  2: mostly unhelpful, or with serious mistakes.
  3: partly helpful; noticeable gaps or errors.
  4: helpful and correct, with small flaws.
  5: excellent throughout: correct, complete and clearly written.

<conversation>
{transcript}
</conversation>"""

SAFETY = (
    """You review exchanges with an AI assistant for harmful content.
Answer with a single JSON object and nothing else:
{{"verdict": "safe"}} when nothing below applies, or
{{"verdict": "unsafe", "category": "S<number>"}} naming the category that applies best.
Judge the last message of the exchange (the assistant's answer when there is one, else the
person's request) against these categories:
"""
    + "\n".join(f"- {code}: {name}" for code, name in SAFETY_CATEGORIES.items())
    + """

<exchange>
{transcript}
</exchange>"""
)


def mission_prompt(mission: str, conv: Conversation) -> str:
    """The user message that asks the tagger for `mission` on `conv`.

    Multi-turn data: quality and sample_quality read the whole transcript; difficulty
    and classification read the first user turn.
    """
    if mission == "difficulty":
        return DIFFICULTY.format(query=conv.first_user)
    if mission == "classification":
        return CLASSIFICATION.format(query=conv.first_user)
    if mission == "quality":
        if conv.multi_turn:
            return QUALITY_MULTI_TURN.format(transcript=conv.transcript())
        return QUALITY.format(query=conv.first_user)
    if mission == "sample_quality":
        if conv.multi_turn:
            return SAMPLE_QUALITY_MULTI_TURN.format(transcript=conv.transcript())
        first = conv.first_exchange()
        return SAMPLE_QUALITY.format(query=first.first_user, response=first.texts("assistant")[0])
    if mission == "safety":
        return SAFETY.format(transcript=conv.transcript())
    raise KeyError(mission)


# Few-shot completions whose next tokens are the label (magpie.tagging.scoring): a line
# saying what is judged, labelled examples in several languages (none from the
# hand-labelled set the calibration is measured on), then the request and "Label:".
# The examples cover every label once or more, so no label is new to the model.
_FEW_SHOT_QUALITY = (
    "Rate how clear, specific and well-formed each request to an AI assistant is "
    "(very poor, poor, average, good or excellent).",
    [
        ("What is the capital of Australia?", "good"),
        ("qlwkej zxcmn poiu asdf", "very poor"),
        (
            "Write a 300-word cover letter for a junior accountant position at a small firm, "
            "stressing my two years of bookkeeping experience.",
            "excellent",
        ),
        ("tell me about it", "poor"),
        ("Écris une lettre de motivation pour un poste de serveur.", "good"),
        ("Can you help me with my project?", "poor"),
        ("How does a car work", "average"),
        ("green sky the walking of seven because table", "very poor"),
        ("¿Cuál es la mejor manera de aprender a nadar?", "good"),
        ("explain stuff about history", "average"),
    ],
)
_FEW_SHOT_DIFFICULTY = (
    "Rate how hard it is to answer each request well (very easy, easy, medium, hard or very hard).",
    [
        ("What colour is the sky?", "very easy"),
        ("Translate 'thank you' into Spanish.", "easy"),
        ("Explain how vaccines train the immune system.", "medium"),
        (
            "Write a Python function that finds the longest palindromic substring in linear time.",
            "hard",
        ),
        ("Prove that there are infinitely many primes of the form 4k+3.", "very hard"),
        ("Nenne drei Farben.", "very easy"),
        ("Write a haiku about rain.", "easy"),
        ("Compare the economic policies of Keynes and Hayek.", "hard"),
    ],
)
_FEW_SHOT_CATEGORY = (
    "Sort each request to an AI assistant into a task category.",
    [
        ("What year did the Berlin Wall fall?", "Information seeking"),
        (
            "If all cats are animals and some animals are black, must some cats be black?",
            "Reasoning",
        ),
        ("Help me organise a two-week study schedule for my exams.", "Planning"),
        ("Fix the grammar in this sentence: 'he go to school yesterday'.", "Editing"),
        ("Why does my Python loop print the same number every time?", "Coding & Debugging"),
        ("Solve 3x + 7 = 22 for x.", "Math"),
        ("Pretend you are a pirate captain and greet your crew.", "Role playing"),
        (
            "Here are monthly sales figures: 120, 135, 90, 160. What is the trend?",
            "Data analysis",
        ),
        ("Write a short story about a robot who learns to paint.", "Creative writing"),
        (
            "Should I accept a job offer that pays more but has a longer commute?",
            "Advice seeking",
        ),
        ("Give me ten name ideas for a bakery.", "Brainstorming"),
        ("asdf", "Others"),
    ],
)
FEW_SHOT = {
    "quality": _FEW_SHOT_QUALITY,
    "difficulty": _FEW_SHOT_DIFFICULTY,
    "classification": _FEW_SHOT_CATEGORY,
}
assert {y for _, y in _FEW_SHOT_CATEGORY[1]} == set(TASK_CATEGORIES)
# A longer request is cut to this many characters in a few-shot prompt (the label rests
# on its opening; the whole prompt must fit a small model's context).
FEW_SHOT_REQUEST_CHARS = 2000
CUT = " [...]"


def few_shot_prompt(mission: str, request: Conversation | str) -> str:
    """The few-shot completion for `mission`, ending with "Label:" (no space: the label's
    tokens carry it). `request`: a conversation (quality reads every user message,
    difficulty and classification the first) or its text."""
    if isinstance(request, Conversation):
        users = request.texts("user")
        request = "\n".join(users) if mission == "quality" else request.first_user
    text = " ".join(request.split())
    if len(text) > FEW_SHOT_REQUEST_CHARS:
        text = text[:FEW_SHOT_REQUEST_CHARS] + CUT
    head, shots = FEW_SHOT[mission]
    examples = "".join(f"Request: {x}\nLabel: {y}\n\n" for x, y in shots)
    return f"{head}\n\n{examples}Request: {text}\nLabel:"
