"""A stage's settings, once: one dataclass per stage, whose fields are its flags.

Every field carries its default and its help text (`flag`); the stage's command line
(`magpie <stage>`, `exp/<stage>.py`), its `--help`, and the keys a recipe may give it all
come from the fields (alignment-handbook's flags-as-dataclasses). A stage that runs a
model also takes the engine and executor flags of `magpie.engines.EngineOptions`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from magpie.engines import ENGINE_FLAGS_HELP, EngineOptions
from magpie.records import InputError
from magpie.stage import run_cli

SAVE_AS_HELP = (
    "json (one array: the original's format) or jsonl (a record per line: smaller, read "
    "line by line by any tool; the choice for large runs)."
)

ENGINE_FLAGS = tuple(f.name for f in dataclasses.fields(EngineOptions))


def flag(default: Any, help: str, *, positional: bool = False) -> Any:
    """A stage flag: its default and the help line `--help` prints. `positional`: the
    command line takes it as the stage's positional arguments (concat's shards)."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default),
            metadata={"help": help, "positional": positional},
        )
    return dataclasses.field(default=default, metadata={"help": help, "positional": positional})


@dataclasses.dataclass
class Settings:
    """Base of every stage: subclasses are dataclasses of `flag` fields with a `run`."""

    stage: ClassVar[str] = "stage"
    uses_engine: ClassVar[bool] = False  # takes EngineOptions' engine and executor flags
    input_field: ClassVar[str | None] = "input_file"  # where a pipeline puts its input
    # Every stage class by its name, as defined (what the dataset card reads a stage's
    # defaults from without importing the pipeline, which imports the card's stages).
    by_name: ClassVar[dict[str, type[Settings]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Settings.by_name[cls.stage] = cls

    def run(self, engine: EngineOptions | None = None) -> Path:
        """Run the stage; return the path of its main output."""
        raise NotImplementedError

    @classmethod
    def flags(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def keys(cls) -> set[str]:
        """Every key a recipe may give this stage (its flags, and the engine's)."""
        return _names(cls) | set(ENGINE_FLAGS) if cls.uses_engine else _names(cls)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], where: str = "recipe"
    ) -> tuple[Settings, EngineOptions]:
        """(settings, engine options) from a mapping of flag names to values; InputError
        naming `where` and the unknown key, with the keys this stage has."""
        unknown = sorted(set(values) - cls.keys())
        if unknown:
            raise InputError(
                f"{where}: {cls.stage} has no setting {', '.join(map(repr, unknown))} "
                f"(it has: {', '.join(sorted(cls.keys()))})"
            )
        own = {k: v for k, v in values.items() if k not in ENGINE_FLAGS or k in _names(cls)}
        engine = {k: v for k, v in values.items() if k in ENGINE_FLAGS and k not in own}
        try:
            return cls(**own), EngineOptions(**engine)
        except TypeError as e:
            raise InputError(f"{where}: {cls.stage}: {e}") from None


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def help_text(cls: type[Settings]) -> str:
    """The stage's docstring with an Args section listing every flag (fire's --help)."""
    lines = [f"      {f.name}: {f.metadata.get('help', '')}\n" for f in dataclasses.fields(cls)]
    if cls.uses_engine:
        lines += [
            f"      {k}: {ENGINE_FLAGS_HELP[k]}\n" for k in ENGINE_FLAGS if k not in _names(cls)
        ]
    return (inspect.cleandoc(cls.__doc__ or "")).rstrip() + "\n\n    Args:\n" + "".join(lines)


def command(cls: type[Settings]) -> Callable:
    """A function fire can call with the stage's flags: it builds the settings and runs
    them. Its signature and docstring are the flags' (for --help)."""
    hints = typing.get_type_hints(cls)
    params, seen = [], set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("positional"):
            params.insert(0, inspect.Parameter(f.name, inspect.Parameter.VAR_POSITIONAL))
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            params.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=hints[f.name],
                )
            )
        seen.add(f.name)
    if cls.uses_engine:
        params += [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
            )
            for f in dataclasses.fields(EngineOptions)
            if f.name not in seen
        ]

    def main(*args, **kwargs):
        positional = [f.name for f in dataclasses.fields(cls) if f.metadata.get("positional")]
        if positional:
            kwargs[positional[0]] = list(args)
        settings, engine = cls.from_mapping(kwargs, where="command line")
        settings.run(engine)

    main.__signature__ = inspect.Signature(params)
    main.__doc__ = help_text(cls)
    main.__name__ = cls.stage
    return main


def run_command(cls: type[Settings], argv: list[str] | None = None) -> None:
    """Run one stage from a command line (magpie.stage.run_cli: the original's flags
    accepted, bad input one line and exit 2)."""
    run_cli(command(cls), argv, stage=cls.stage)


def console(cls: type[Settings]) -> Callable[[], None]:
    """The `magpie-<stage>` console command of a stage."""
    return functools.partial(run_command, cls)
