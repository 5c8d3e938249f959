"""Token paths: how a tokenizer writes a set of words after a prompt, and the words'
probabilities as the model's next tokens.

A label or rating is read from its token path (`token_paths`): the ids that follow the
prompt for that word, as the tokenizer splits the whole text. Where paths share their
first tokens (" very easy", " very hard") the shared prefix gets another pass
(`branch_points`); once a path is one word's alone its later tokens are taken as given
(`path_probs`).
"""

from __future__ import annotations

from collections.abc import Sequence


def token_paths(
    tokenizer, head: str, words: Sequence[str], *, single_token: bool = False
) -> tuple[str, list[list[int]]]:
    """(opening, token ids of each word) where each word follows `head` + opening as the
    tokenizer splits the whole text: " very" is one token after "Label:" for most
    tokenizers, " 4" is " " and "4" for some. `single_token`: every word must be one
    token after the opening (the judge's ratings). Raises ValueError when a word's tokens
    are not a suffix of the joined text (or not one token), or one path is a prefix of
    another (no label could then be told from the other by its tokens)."""

    def ids(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    for opening in (" ", ""):
        base = ids(head + opening)
        paths = []
        for w in words:
            full = ids(f"{head} {w}")
            if full[: len(base)] != base or len(full) == len(base):
                break
            if single_token and len(full) != len(base) + 1:
                break
            paths.append(full[len(base) :])
        else:
            clash = any(
                a is not b and a == b[: len(a)] for a in paths for b in paths if len(a) <= len(b)
            )
            if not clash:
                return opening, paths
    raise ValueError(f"the tokenizer cannot tell the labels {list(words)} apart after {head!r}")


def branch_points(paths: Sequence[Sequence[int]]) -> list[tuple[tuple[int, ...], dict[int, list]]]:
    """The prefixes where the label paths part, each with {next token: labels below it}
    (label = index into `paths`), shortest first. A prefix with one way on needs no pass."""
    out, frontier = [], [((), list(range(len(paths))))]
    while frontier:
        prefix, members = frontier.pop(0)
        while len(members) > 1:
            children: dict[int, list] = {}
            for m in members:
                children.setdefault(paths[m][len(prefix)], []).append(m)
            if len(children) > 1:
                out.append((prefix, children))
                frontier += [((*prefix, t), ms) for t, ms in children.items()]
                break
            prefix = (*prefix, next(iter(children)))
    return out


def path_probs(engine, prompts: Sequence[list[int]], paths: Sequence[Sequence[int]]):
    """P(each label's path | prompt) for token-id prompts: products of next-token
    probabilities at the branch points (one `next_token_probs` call per point); NaN rows
    where the engine could not read a prompt."""
    probs = [[1.0] * len(paths) for _ in prompts]
    for prefix, children in branch_points(paths):
        tokens = list(children)
        rows = engine.next_token_probs([[*p, *prefix] for p in prompts], tokens)
        for r, row in enumerate(rows):
            for j, t in enumerate(tokens):
                for m in children[t]:
                    probs[r][m] *= row[j]
    return probs
