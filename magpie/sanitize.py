"""Plain-text clean-up of raw Magpie instructions (``--sanitize``).

A model fed only the pre-query template often writes more than one user turn: a
"Question:" label, markdown bold, an answer after "Answer:", numbered solution steps.
:func:`instruction_post_process` cuts such a completion back to the instruction and
returns a *class number* naming the rule that fired, so the effect of sanitising can be
audited per record (field ``instruction_sanitize_class_num``).

Rule sets (see :func:`sanitize_style`): ``"gemma"`` for every Gemma model, ``"llama-3"``
for Llama-3/3.1/3.2/3.3 and ``"generic"`` for everything else (same rules and numbers as
``"llama-3"``; the rules are model-agnostic text clean-ups).

Rules, applied in this order (first match wins); "Q-cut" keeps the text up to and
including the first question mark, "line 1" keeps the first line, "unbold" removes every
"**" when the text starts with "**". A question mark ("?" below) is one of
:data:`QUESTION_MARKS` (? ？ ؟ ﹖ ...: not the opening ¿), a colon (":" below) one of
:data:`COLONS` (: ： ﹕ ︓ ...), and "ends ':'" means :func:`ends_with_colon` (closing quotes,
brackets, "*" and whitespace after the colon aside): Chinese and Japanese instructions
write the full-width forms. The input is stripped and passed through :func:`remove_prefix`
first; the result of every rule except 1 is passed through :func:`remove_prefix` again.
The output is always stripped.

====  ======  ==========  ==================================================================
gemma llama-3 condition   action
      generic
====  ======  ==========  ==================================================================
0     0       empty input return ""
1     1       starts "*", Q-cut, all "*" removed, then :func:`remove_prefix`
              has "?"
2.1   2.1     starts '"', Q-cut, all '"' removed
              has "?"
2.2   2.2     starts '"'  line 1, all '"' and "*" removed
3     3       starts <b>  line 1, "<b>", "</b>" and "*" removed
4     4       answer      text before the marker, unbold. Markers ending in ":" ("Answer:",
              marker      "Answers:", "Explanation:", "Solution:", "Solution Approach:") match
                          as written; the others ("The answer is", "Correct answer", "The
                          correct answer", "Answer is", "Here are some") need a following
                          "s?:". Case-sensitive.
-     5       "# Step 1"  text before "# Step 1" / "## Step 1" / "### Step 1", unbold
5.1   6.1     line 1 ends text before the first markdown heading line (a later line starting
              ":" + "#"   with "#"), unbold
5.2   6.2     line 1 ends Q-cut, unbold
              ":" + "?"
5.3   6.3     line 1 ends line 1, all "*" removed
              ":"
6.1   99.1    has "?"     Q-cut, unbold
6.2   99.2    otherwise   line 1, all "*" removed
====  ======  ==========  ==================================================================

Bugs fixed relative to the original ``exp/str_utils.py``:

* (2) answer markers that already end in ":" had ``s?:`` appended, so "Answer:" only
  matched "Answer::"; they now match with a single colon.
* (3) the class-3 ``<b>`` clean-up was computed and discarded; it now keeps line 1 without
  the tags and "*".
* (4) "unbold" tested ``find("**") == 1``; it now tests for a leading "**" (index 0).
* (5) the list-marker rule ``^\\w+\\)`` stripped any leading word followed by ")" ("Python)
  ..."); only real markers are stripped now (see :func:`remove_prefix`).
* (12) only "gemma-2" paths were sanitised although every "gemma" path passed the
  ``--sanitize`` guard; all Gemma versions use the gemma rules now, and other models use the
  generic rules instead of being returned unchanged with class 0.
* the answer/step markers were searched before the second prefix removal, and their
  offsets then applied to the shortened text; they are searched in the current text now.
* the colon rule cut at *any* "#" ("Write a C# function that ...:" became "Write a C"); it
  now cuts only at a markdown heading, i.e. a line after the first one starting with "#".
* (issue 21) the rules knew only the ASCII "?" and ":", so a Chinese or Japanese instruction
  ("北京在哪里？答案：……") was never cut at its question or its colon line, and "Question："
  or "Answer：" were not labels or markers; every rule now reads the question marks and
  colons of :data:`QUESTION_MARKS` and :data:`COLONS`.
* :func:`remove_prefix` is applied until nothing more changes, so "1. Task: ..." and
  "Question: Context: ..." lose both labels and a second pass does not change the result.

Known limit: the cut rules (4, 5, 5.1/6.1) may keep several lines; if the first of them
ends with ":", sanitising that output again keeps only that line (rule 5.3/6.3).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "COLONS",
    "QUESTION_MARKS",
    "ends_with_colon",
    "instruction_post_process",
    "remove_prefix",
    "sanitize_style",
]

# --- punctuation of every script ------------------------------------------------------------

# Colons: an instruction ending with one is unfinished ("List three colours：").
COLONS = frozenset(
    unicodedata.lookup(name)
    for name in (
        "COLON",
        "FULLWIDTH COLON",  # Chinese, Japanese
        "SMALL COLON",
        "PRESENTATION FORM FOR VERTICAL COLON",
        "ETHIOPIC COLON",
        "ETHIOPIC PREFACE COLON",  # before a list or a quotation
        "MONGOLIAN COLON",
    )
)
# Marks ending a question; not the opening "¿" of Spanish, nor the Armenian one (written
# over a vowel inside the word).
QUESTION_MARKS = frozenset(
    unicodedata.lookup(name)
    for name in (
        "QUESTION MARK",
        "FULLWIDTH QUESTION MARK",  # Chinese, Japanese
        "SMALL QUESTION MARK",
        "PRESENTATION FORM FOR VERTICAL QUESTION MARK",
        "ARABIC QUESTION MARK",  # Arabic, Persian, Urdu
        "GREEK QUESTION MARK",  # NFC makes it ";", which is not one
        "ETHIOPIC QUESTION MARK",
        "DOUBLE QUESTION MARK",
        "QUESTION EXCLAMATION MARK",
        "EXCLAMATION QUESTION MARK",
        "INTERROBANG",
    )
)
_COLON = "[" + re.escape("".join(sorted(COLONS))) + "]"
_QUESTION_RE = re.compile("[" + re.escape("".join(sorted(QUESTION_MARKS))) + "]")
# After a final colon: closing quotes and brackets of any script, markdown bold.
_CLOSERS = frozenset("\"'*`")


def ends_with_colon(text: str) -> bool:
    """Whether `text` ends with a colon of any script (:data:`COLONS`), whitespace,
    closing brackets and quotes (Unicode categories Pe and Pf, and " ' * `) after it
    aside: "Translate this：", 'Complete "the list:"', "(as follows:)"."""
    end = len(text)
    while end and (
        text[end - 1].isspace()
        or text[end - 1] in _CLOSERS
        or unicodedata.category(text[end - 1]) in ("Pe", "Pf")
    ):
        end -= 1
    return end > 0 and text[end - 1] in COLONS


def _has_question(text: str) -> bool:
    return _QUESTION_RE.search(text) is not None


# --- remove_prefix -------------------------------------------------------------------------

# A list marker is a number or one letter, closed by "." or ")", or wrapped in "(...)", and
# followed by whitespace (or nothing). A whole word is never a marker ("Python) ..." stays),
# and "3.14" / "e.g." are not markers because no whitespace follows.
_LIST_MARKER_RE = re.compile(
    r"^(?:\(\s*(?:\d+|[^\W\d_])\s*\)|(?:\d+|[^\W\d_])[.)])(?=\s|$)\s*",
)

# Labels a model puts in front of the instruction it is about to write.
_PREFIX_WORDS = (
    "Task",
    "Prompt",
    "Original Prompt",
    "Question",
    "The Problem",
    "Problem",
    "Scenario",
    "The senario",  # misspelling seen in real generations, kept from the original list
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
)


def _label_forms(label: str, sep: str) -> list[str]:
    """Regexes for ``Label:``, ``**Label**`` (also ``**Label:**``/``**Label**:``), ``## Label:``."""
    return [
        rf"{label}[ \t]*{sep}",
        rf"\*\*[ \t]*{label}[ \t]*(?:{sep})?[ \t]*\*\*(?:[ \t]*{sep})?",
        rf"\#{{1,6}}[ \t]*{label}[ \t]*(?:{sep}|(?=\n|$))",
    ]


def _build_prefix_re() -> re.Pattern[str]:
    """Build one anchored, case-insensitive regex over every label form."""
    forms: list[str] = []
    for word in _PREFIX_WORDS:
        label = r"[ \t]+".join(re.escape(part) for part in word.split())
        forms += _label_forms(label, _COLON)
    # Numbered labels: "Question 3:", "Question 3.", "Part 1:", "Q2.", "Q2:".
    for label in (r"Question[ \t]*\d+", r"Part[ \t]*\d+", r"Q\d+"):
        forms += _label_forms(label, f"(?:{_COLON}|\\.)")
    return re.compile(rf"^(?:{'|'.join(forms)})\s*", re.IGNORECASE)


_PREFIX_RE = _build_prefix_re()


def remove_prefix(text: str) -> str:
    """Strip leading list markers and labels such as "Task:" or "**Question**".

    Models often open an instruction with a label ("Question 3:", "## Task:") or a list
    marker ("1.", "a)", "(b)"); neither belongs to the instruction. Markers and labels are
    removed repeatedly until the text no longer changes, so the result is stable under a
    second call. Words followed by ")" ("Python) ...") are not list markers and stay.
    """
    text = text.strip()
    while True:
        new = _LIST_MARKER_RE.sub("", text, count=1).strip()
        new = _PREFIX_RE.sub("", new, count=1).strip()
        if new == text:
            return text
        text = new


# --- instruction_post_process --------------------------------------------------------------

_MARKERS_WITH_COLON = ("Answer:", "Answers:", "Explanation:", "Solution Approach:", "Solution:")
_MARKERS_WITHOUT_COLON = (
    "The answer is",
    "Correct answer",
    "The correct answer",
    "Answer is",
    "Here are some",
)
# Case-sensitive on purpose: "answer:" inside a sentence is more often part of the request.
_ANSWER_RE = re.compile(
    "|".join(
        [re.escape(m[:-1]) + _COLON for m in _MARKERS_WITH_COLON]
        + [re.escape(m) + "s?" + _COLON for m in _MARKERS_WITHOUT_COLON]
    )
)
# "# Step 1", "## Step 1", "### Step 1" (optionally followed by ":"): a worked solution.
_STEP_RE = re.compile(r"(?<!#)#{1,3} Step 1(?!\d):?")
# A markdown heading line (after optional indentation).
_HEADING_RE = re.compile(r"^[ \t]*#", re.MULTILINE)

_LLAMA3_RE = re.compile(r"llama[-_ ]?3(?:\.\d+)?(?![\db])")

# Class numbers per style, keyed by rule name. Integers stay ints so that JSON output
# matches the original ("class_num": 1, not 1.0).
_GEMMA_CLASSES: dict[str, float] = {
    "colon_heading": 5.1,
    "colon_question": 5.2,
    "colon_line": 5.3,
    "question": 6.1,
    "line": 6.2,
}
_LLAMA3_CLASSES: dict[str, float] = {
    "step": 5,
    "colon_heading": 6.1,
    "colon_question": 6.2,
    "colon_line": 6.3,
    "question": 99.1,
    "line": 99.2,
}


def sanitize_style(model_path: str) -> str | None:
    """Name the rule set used for instructions generated by ``model_path``.

    Returns "gemma" for every Gemma version (gemma, gemma-1.1, gemma-2, gemma-3, codegemma
    ...), "llama-3" for Llama-3/3.1/3.2/3.3 and "generic" for any other model. The rules
    are plain-text clean-ups that fit any chat model, so unlike the original no model is
    left unsanitised: ``None`` is never returned (the optional return type only keeps
    callers that check for it valid).
    """
    lowered = model_path.lower()
    if "gemma" in lowered:
        return "gemma"
    if _LLAMA3_RE.search(lowered):
        return "llama-3"
    return "generic"


def _first_line(text: str) -> str:
    """First line, stripped: generations often continue with an answer on the next line."""
    return text.split("\n", 1)[0].strip()


def _q_cut(text: str) -> str:
    """Text up to and including the first question mark (of any script): the question
    the model asked."""
    mark = _QUESTION_RE.search(text)
    return text[: mark.start()].strip() + mark.group() if mark else text.strip()


def _unbold(text: str) -> str:
    """Remove every "**" when the text opens with bold markup (a bolded instruction)."""
    text = text.strip()
    if text.startswith("**"):
        text = text.replace("**", "").strip()
    return text


def instruction_post_process(instruction: str, model_path: str) -> tuple[str, float]:
    """Cut a raw generated instruction back to the instruction itself.

    Returns ``(text, class_num)`` where ``class_num`` names the rule that fired (see the
    module docstring; numbering depends on :func:`sanitize_style`). Empty input gives
    ``("", 0)``; every other input gets a non-zero class.
    """
    text = instruction.strip()
    if not text:
        return "", 0
    is_gemma = sanitize_style(model_path) == "gemma"
    classes = _GEMMA_CLASSES if is_gemma else _LLAMA3_CLASSES

    text = remove_prefix(text)

    # Rule 1: a bolded / bulleted question.
    if text.startswith("*") and _has_question(text):
        return remove_prefix(_q_cut(text.replace("*", ""))), 1

    class_num: float
    first = _first_line(text)
    if text.startswith('"'):
        if _has_question(text):
            text, class_num = _q_cut(text.replace('"', "")), 2.1
        else:
            text, class_num = first.replace('"', "").replace("*", ""), 2.2
    elif text.startswith("<b>"):
        text = first.replace("<b>", "").replace("</b>", "").replace("*", "")
        class_num = 3
    elif answer := _ANSWER_RE.search(text):
        text, class_num = _unbold(text[: answer.start()]), 4
    elif not is_gemma and (step := _STEP_RE.search(text)):
        text, class_num = _unbold(text[: step.start()]), classes["step"]
    elif ends_with_colon(first):
        line_end = text.find("\n")
        heading = _HEADING_RE.search(text, line_end + 1) if line_end >= 0 else None
        if heading:
            text, class_num = _unbold(text[: heading.start()]), classes["colon_heading"]
        elif _has_question(text):
            text, class_num = _unbold(_q_cut(text)), classes["colon_question"]
        else:
            text, class_num = first.replace("*", ""), classes["colon_line"]
    elif _has_question(text):
        text, class_num = _unbold(_q_cut(text)), classes["question"]
    else:
        text, class_num = first.replace("*", ""), classes["line"]

    return remove_prefix(text), class_num
