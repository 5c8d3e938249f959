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
