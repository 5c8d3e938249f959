"""The wheel works outside the repository: built from the package's sources, installed in
a fresh venv and run from another folder, it finds its shipped files and generates.

The venv sees the system's packages (torch etc. are not installed again), among them
this repository's editable install, and pytest runs with the repository on the path: the
checks run the venv's python without PYTHONPATH, from a folder outside the repository,
and assert that every magpie module they import comes from the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from magpie.skills import TEMPLATE_NAMES

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "magpie" / "configs"
# What setuptools reads to build the wheel; the sources are copied so the build leaves
# nothing (build/, *.egg-info) in the checkout and no stale build/lib gets into the wheel.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md")

# Run by the venv's python from a folder outside the repository; prints one JSON object.
SHIPPED_FILES = """
import json, sys
import magpie
from magpie.filters import load_filter_config
from magpie.profiles import get_profile, load_model_configs, system_texts
from magpie.resources import CONFIGS_DIR
from magpie.skills import load_templates

print(json.dumps({
    "magpie": magpie.__file__,
    "configs_dir": str(CONFIGS_DIR),
    "registry": load_model_configs(),
    "llama3_template": get_profile("meta-llama/Meta-Llama-3-8B-Instruct").pre_query_template,
    "filter_preset": load_filter_config("magpie-300k").top_k,
    "system_texts": system_texts(),
    "skills_templates": {k: t.template for k, t in load_templates().items()},
    "modules": [getattr(m, "__file__", None) or "" for k, m in sys.modules.items()
                if k == "magpie" or k.startswith("magpie.")],
}))
"""

# Instruction generation the way exp/gen_ins.py drives it, on the hf engine.
GENERATE = """
import json, sys
from pathlib import Path
from magpie.engines import EngineOptions
from magpie.instructions import InstructionJob, instruction_file_name
from magpie.models import canonical_name
from magpie.profiles import get_profile
from magpie.records import read_records

model_path, out = sys.argv[1], Path(sys.argv[2])
options = EngineOptions(engine="hf", dtype="float32", batch_size=4)
name = canonical_name(model_path)
tokenizer = options.tokenizer(model_path)
profile = get_profile(name, tokenizer)
output = out / instruction_file_name(name, 4, 0)
job = InstructionJob(profile, output, model_name=name, total_prompts=4, n=2,
                     max_tokens=8, control_tasks="math", seed=1)
job.run(options.load(model_path, seed=1, tokenizer=tokenizer))
print(json.dumps({
    "profile_source": profile.source,
    "records": read_records(output),
    "modules": [getattr(m, "__file__", None) or "" for k, m in sys.modules.items()
                if k == "magpie" or k.startswith("magpie.")],
}))
"""


def run(cmd: list, cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv (with the system's packages) holding the wheel built from the sources."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    shutil.copytree(REPO / "magpie", src / "magpie", ignore=shutil.ignore_patterns("__pycache__"))
    for name in BUILD_INPUTS:
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    pip = ("-m", "pip", "--disable-pip-version-check", "--no-input", "-q")
    run([sys.executable, *pip, "wheel", "--no-deps", "--no-build-isolation", src, "-w", root], root)
    (wheel,) = root.glob("magpie_toolkit-*.whl")
    env = root / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env], root)
    # The system's pip, run by the venv's python, installs into the venv.
    run([env / "bin" / "python", *pip, "install", "--no-deps", "--force-reinstall", wheel], root)
    (root / "elsewhere").mkdir()
    return env


def run_in_venv(venv: Path, script: str, *args) -> dict:
    cwd = venv.parent / "elsewhere"
    (cwd / "check.py").write_text(script)
    out = run([venv / "bin" / "python", "check.py", *args], cwd)
    return json.loads(out.strip().splitlines()[-1])


def assert_from_venv(venv: Path, modules: list[str]) -> None:
    """Every magpie module was imported from the venv's site-packages, none from the repo."""
    site = next((venv / "lib").glob("python3*/site-packages")).resolve()
    assert modules
    for path in modules:
        assert Path(path).resolve().is_relative_to(site / "magpie"), path


def test_the_repository_link_points_into_the_package():
    assert (REPO / "configs").is_symlink() and (REPO / "configs").resolve() == CONFIGS.resolve()


def test_installed_wheel_reads_its_shipped_files(venv):
    got = run_in_venv(venv, SHIPPED_FILES)
    assert_from_venv(venv, got["modules"])
    assert not Path(got["magpie"]).resolve().is_relative_to(REPO.resolve())
    assert Path(got["configs_dir"]).resolve().is_relative_to(venv.resolve())
    assert got["registry"] == json.loads((CONFIGS / "model_configs.json").read_text())
    assert (
        got["llama3_template"]
        == got["registry"]["meta-llama/Meta-Llama-3-8B-Instruct"]["pre_query_template"]
    )
    assert got["filter_preset"] == 300000
    assert got["system_texts"] == json.loads((CONFIGS / "system_prompts.json").read_text())
    shipped = {p.stem: p.read_text() for p in (CONFIGS / "prompts" / "skills").glob("*.txt")}
    assert got["skills_templates"] == shipped and set(shipped) == set(TEMPLATE_NAMES)


def test_installed_wheel_generates_instructions(venv, tiny_model_dir, tmp_path):
    got = run_in_venv(venv, GENERATE, tiny_model_dir, tmp_path)
    assert_from_venv(venv, got["modules"])
    assert got["profile_source"] == "chat_template"  # a folder: its chat template, not the registry
    records = got["records"]
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    math = json.loads((CONFIGS / "system_prompts.json").read_text())["math"]
    assert all(math in r["pre_query_template"] for r in records)  # the shipped system text
    assert all(isinstance(r["instruction"], str) for r in records)


def test_installed_console_command_runs_gen_ins_from_another_folder(venv, tiny_model_dir):
    """`magpie-gen-ins` from the wheel's entry points, the original's flags, another cwd."""
    cwd = venv.parent / "elsewhere"
    out = run(
        [
            venv / "bin" / "magpie-gen-ins",
            "--model_path",
            tiny_model_dir,
            "--total_prompts",
            "4",
            "--n",
            "2",
            "--max_tokens",
            "8",
            "--dtype",
            "float32",
            "--control_tasks",
            "math",
            "--seed",
            "1",
            "--timestamp",
            "7",
            "--output_folder",
            "made",
            "--job_name",
            "tiny",
        ],
        cwd,
    )
    assert "[gen_ins] wrote" in out
    (made,) = (cwd / "made" / "tiny").glob("Magpie_*_4_7_ins.json")
    records = json.loads(made.read_text())
    math = json.loads((CONFIGS / "system_prompts.json").read_text())["math"]
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    assert all(math in r["pre_query_template"] for r in records)


def imported_modules(package: Path) -> dict[str, set[str]]:
    """{module: package modules it imports}, every import in the file counted (also those
    inside functions), `from a import b` naming a.b when that is a module."""
    import ast

    files = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            edges[module] |= {m for m in map(known, names) if m and m != module}
    return edges


def test_the_package_has_no_import_cycle():
    edges = imported_modules(REPO / "magpie")
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges[module]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, module, nxt])
            if nxt not in state:
                visit(nxt, [*trail, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert {"magpie.pipeline", "magpie.stages.gen_res", "magpie.conversation"} <= set(edges)


def test_importing_the_api_loads_no_model_library():
    """`import magpie` (the API, every stage's settings) stays light: torch, transformers,
    vLLM, Ray and FAISS load when a stage needs a model, not before."""
    code = (
        "import sys, magpie; heavy = ('torch', 'transformers', 'vllm', 'ray', 'faiss', "
        "'sentence_transformers'); print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
