"""The data files shipped inside the package, in magpie/configs/: the model registry,
the system texts, the filter presets, the skills prompt templates, the taggers' label
priors and the run recipes.

They are found next to this module, so a checkout, an editable install and an installed
wheel read the same files (the repository's top-level `configs` is a link to them).
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
FILTER_PRESETS_DIR = CONFIGS_DIR / "filters"
SKILLS_PROMPTS_DIR = CONFIGS_DIR / "prompts" / "skills"
# Label priors of tagger models (magpie.tagging.scoring), made by bench/bench_tag_trust.py.
TAG_CALIBRATION = CONFIGS_DIR / "tagging" / "calibration.json"
# Run recipes (magpie.pipeline): the default job and one per model script.
RECIPES_DIR = CONFIGS_DIR / "recipes"


def filter_presets() -> list[str]:
    """The names of the shipped filter presets (magpie, magpie-300k, ...)."""
    return sorted(p.stem for p in FILTER_PRESETS_DIR.glob("*.yaml"))
