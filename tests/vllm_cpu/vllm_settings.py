"""Settings every vLLM engine of tests/vllm_cpu shares (imported by conftest and tests)."""

# float32, not the bfloat16 default: vLLM on CPU is not batch-invariant (VLLM_BATCH_INVARIANT
# covers CUDA kernels only), so a record's logits move in the last bits with the batch
# around it and with prefix-cache hits; in bfloat16 that flipped near-tied samples (the
# call-boundary test failed there), and the exactness tests (same records whatever the
# call boundaries, after a kill, offline vs server) compare text.
DTYPE = "float32"
# A context long enough for the long-prompt test (the model's own is 8192); with chunked
# prefill on, vLLM-CPU's step budget would stay 4096, below such a prompt.
MAX_MODEL_LEN = 8192
# For an engine started next to the session's (the killed CLI run, the server): a KV cache
# of 1 GiB, not a share of RAM minus what the process already holds (0.05 of RAM left
# nothing for the KV cache once float32 weights were loaded).
SECOND_ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
