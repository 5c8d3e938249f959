"""Chat-template rendering: every prompt a stage builds from messages is made here.

`render_chat` renders a jinja chat template string exactly as `apply_chat_template`
would (profile derivation, server tokenizers); `render` applies a tokenizer's own
template, with the contents of the messages marked as data (magpie.prompt_text), so
engines tokenise record text as text. Templates with a date (Llama-3.1/3.2) or that ask
`strftime_now` for it (gpt-oss) get the fixed TEMPLATE_DATE: prompts, and so journals and
results, are the same from one day to the next.

The follow-up user turn is extracted Magpie-style: the conversation so far, rendered by
the model's own chat template, followed by the header of a new user turn. We get that
string by asking the template to render one more user message and cutting at its text,
so the prompt is exactly what the template would make — for every family (Llama-3,
ChatML, Gemma, Mistral, Phi-3, ...), never a dangling assistant header and never a
second BOS (the mistakes of appending a pre-query template after a generation prompt).
"""

from __future__ import annotations

import re
from datetime import datetime

from magpie.prompt_text import render_with_data
from magpie.records import InputError

# Templates with a date (Llama-3.1/3.2) render today's date unless given one; a fixed
# date keeps prompts, and so journals and results, the same from one day to the next.
TEMPLATE_DATE = "26 Jul 2024"
_SENTINEL = "MAGPIENEXTUSERTURN7Q"


def render_chat(
    chat_template: str,
    messages: list[dict],
    add_generation_prompt: bool = False,
    **special_tokens: str,
) -> str:
    """Render messages with a jinja chat template exactly as `apply_chat_template` would."""
    from transformers.utils.chat_template_utils import render_jinja_template

    chat_template, dates = fixed_date_template(chat_template)
    special_tokens = {**special_tokens, **dates}
    rendered, _ = render_jinja_template(
        conversations=[messages],
        chat_template=chat_template,
        add_generation_prompt=add_generation_prompt,
        date_string=TEMPLATE_DATE,
        **special_tokens,
    )
    return rendered[0]


def fixed_date_template(chat_template: str) -> tuple[str, dict]:
    """(template, extra render kwargs) so that a template asking strftime_now for today's
    date (gpt-oss) gets TEMPLATE_DATE in each format it asks for, through a macro of that
    name (the renderer passes no functions): prompts then do not change from day to day."""
    formats = set(_STRFTIME_CALL.findall(chat_template))
    if not formats:
        return chat_template, {}
    dates = {f: _template_strftime(f) for f in formats}
    return _STRFTIME_MACRO + chat_template, {"magpie_template_dates": dates}


_STRFTIME_CALL = re.compile(r"""strftime_now\(\s*["']([^"']*)["']\s*\)""")
_STRFTIME_MACRO = (
    "{%- macro strftime_now(fmt) -%}{{- magpie_template_dates[fmt] -}}{%- endmacro -%}"
)


def _template_strftime(fmt: str) -> str:
    """strftime_now for templates: TEMPLATE_DATE in the format asked for."""
    return datetime.strptime(TEMPLATE_DATE, "%d %b %Y").strftime(fmt)


def render(tokenizer, messages: list[dict], add_generation_prompt: bool, **template_kwargs) -> str:
    """The tokenizer's chat template applied to messages (fixed date for dated templates;
    `template_kwargs` such as enable_thinking go to the template). Contents holding a
    special-token string come back as `ChatText` with their spans marked as data, so
    engines tokenise them as text (magpie.prompt_text)."""
    return render_with_data(
        tokenizer,
        lambda ms: _render(tokenizer, ms, add_generation_prompt, **template_kwargs),
        messages,
    )


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, **template_kwargs) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the model's tokenizer has no chat template to render conversations")
    template, dates = fixed_date_template(tokenizer.chat_template)
    if dates:
        template_kwargs = {**template_kwargs, "chat_template": template, **dates}
    try:
        return tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            date_string=TEMPLATE_DATE,
            **template_kwargs,
        )
    except Exception as e:  # templates raise on roles they do not support (Gemma: system)
        if type(e).__name__ in ("TemplateError", "TemplateSyntaxError", "UndefinedError"):
            raise InputError(f"the chat template rejects this conversation: {e}") from None
        raise


def user_turn_prompt(tokenizer, messages: list[dict]) -> str:
    """`messages` rendered as a closed conversation plus the header of the next user turn."""
    rendered = render(tokenizer, [*messages, {"role": "user", "content": _SENTINEL}], False)
    cut = rendered.find(_SENTINEL)
    if cut == -1:
        raise InputError("the chat template drops user messages; cannot extract user turns")
    return rendered[:cut]


def assistant_turn_prompt(tokenizer, messages: list[dict], **template_kwargs) -> str:
    """`messages` rendered with the assistant's turn opened."""
    return render(tokenizer, messages, True, **template_kwargs)


# The name the single-turn stages (responses, tagging, judge, skills) use.
chat_prompt = assistant_turn_prompt


def supports_system(tokenizer) -> bool:
    """Whether the chat template renders a system turn (Gemma's refuses one)."""
    try:
        user_turn_prompt(tokenizer, [{"role": "system", "content": "S"}])
    except InputError:
        return False
    return True


def first_user_prompt(tokenizer, pre_query_template: str, system: str | None) -> str:
    """The first user turn: the profile's pre-query template (`pre_query_template`), or
    the chat template with a system prompt."""
    if system is None:
        return pre_query_template
    return user_turn_prompt(tokenizer, [{"role": "system", "content": system}])
