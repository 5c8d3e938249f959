"""The `magpie` command (also `python -m magpie`):

    magpie run [RECIPE] [--KEY VALUE ...] [--STAGE.KEY VALUE ...] [--dry_run]
    magpie STAGE [FLAGS]          one stage, the same flags as exp/STAGE.py
    magpie report PATH... [--output FILE] [--sample N]
                                  the report page (HTML) of run folders or record files

RECIPE is a YAML file or a shipped recipe's name (magpie/configs/recipes); none runs the
embedded default job. --KEY sets a shared key (model_path, seed, output_dir, engine
flags...), --STAGE.KEY one stage's flag; --dry_run prints the resolved stages and stops.
"""

from __future__ import annotations

import dataclasses
import sys

import yaml

from magpie.pipeline import STAGES, plan, run
from magpie.records import InputError
from magpie.settings import run_command
from magpie.stage import INTERRUPTED, setup_logging

USAGE = __doc__ + "\nStages: " + ", ".join(STAGES) + "\n"


def parse_overrides(args: list[str]) -> dict:
    """{key: value} of `--key value`, `--key=value` and bare `--key` (True) arguments;
    `--stage.key` becomes `stage__key`. Values are read as YAML scalars (0.9, true,
    null), except an empty string, which stays a string. InputError on a stray word."""
    out, i = {}, 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--") or len(token) == 2:
            raise InputError(f"magpie run: unexpected argument {token!r} (flags are --key value)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i < len(args) and not args[i].startswith("--"):
                value = args[i]
                i += 1
            else:
                value = "true"
        key = key.replace("-", "_").replace(".", "__")
        out[key] = yaml.safe_load(value) if value != "" else ""
    return out


def show(recipe: str | None, overrides: dict) -> None:
    """Print each stage of the recipe with every flag resolved (what --dry_run shows)."""
    for step in plan(recipe, **overrides):
        engine = {
            f.name: getattr(step.engine, f.name)
            for f in dataclasses.fields(step.engine)
            if getattr(step.engine, f.name) != f.default
        }
        settings = dataclasses.asdict(step.settings)
        if hasattr(step.settings, "sampling"):  # defaults that depend on the model, resolved
            settings.update(step.settings.sampling())
        settings.update(engine)
        print(yaml.safe_dump([{step.name: settings}], sort_keys=False).rstrip())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if command in STAGES:
        run_command(STAGES[command], rest)
        return
    if command != "run":
        print(f"error: no command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    if {"-h", "--help"} & set(rest):
        print(USAGE)
        return
    setup_logging()
    recipe = rest.pop(0) if rest and not rest[0].startswith("--") else None
    try:
        overrides = parse_overrides(rest)
        if overrides.pop("dry_run", False):
            show(recipe, overrides)
        else:
            run(recipe, **overrides)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
