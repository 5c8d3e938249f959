"""Magpie: alignment data synthesised from aligned chat models prompted with nothing.

The Python API: a whole run from a recipe, or one stage from its settings.

    import magpie
    outputs = magpie.run("my_recipe.yaml")          # or a dict, or a shipped recipe's name
    outputs = magpie.run({"stages": [{"gen_ins": {"total_prompts": 8}}, {"gen_res": {}}]})
    path = magpie.GenRes(input_file="ins.json", max_tokens=512).run()

`run` returns each stage's output path by stage name; a stage's `run` returns its
output's path. Every stage's settings are a dataclass whose fields are its flags (the
same as `magpie STAGE --help` and exp/STAGE.py); engine and executor flags go in
`magpie.EngineOptions` (`stage.run(magpie.EngineOptions(engine="vllm"))`).
"""

from magpie.engines import EngineOptions
from magpie.pipeline import STAGES, load_recipe, plan, run
from magpie.records import InputError, iter_records, read_records, write_records
from magpie.stages.concat import Concat
from magpie.stages.filter import Filter
from magpie.stages.gen_dis import GenDis
from magpie.stages.gen_ins import GenIns
from magpie.stages.gen_mt import GenConv, GenMt
from magpie.stages.gen_po_pairs import GenPoPairs
from magpie.stages.gen_po_rewards import GenPoRewards
from magpie.stages.gen_res import GenPoMultiRes, GenRes
from magpie.stages.report import Report
from magpie.stages.run_task import RunTask
from magpie.stages.unitag import Unitag

__version__ = "0.1.0"

__all__ = [
    "STAGES",
    "Concat",
    "EngineOptions",
    "Filter",
    "GenConv",
    "GenDis",
    "GenIns",
    "GenMt",
    "GenPoMultiRes",
    "GenPoPairs",
    "GenPoRewards",
    "GenRes",
    "InputError",
    "Report",
    "RunTask",
    "Unitag",
    "iter_records",
    "load_recipe",
    "plan",
    "read_records",
    "run",
    "write_records",
]
