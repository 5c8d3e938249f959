"""Run steps data-parallel on a Ray cluster: the same records as one process, faster.

Each replica is a Ray actor holding one model, loaded once (an engine on its own GPUs,
a tagger, an embedding model). The driver splits the step's to-do list into chunks and
hands them out from a queue, one chunk in flight per replica; as a chunk comes back its
entries are committed to the step's journal in one synced write. Why actors with a queue
and not Ray Data's `map_batches`: the journal is then the driver's alone, so resuming,
"nothing lost or doubled" and record order stay exactly the local executor's, with no
shards to reconcile. A record's text depends only on (run seed, stage, item), so which
replica made a chunk does not matter.

Faults: a replica whose process dies (killed, out of memory) is restarted by Ray and its
chunk goes back to the front of the queue for the next free replica; a chunk that fails
`MAX_ATTEMPTS` times stops the run with its error. A driver killed at any moment leaves
the committed chunks in the journal; rerunning the same command makes only the rest.

Workers need the package: on the local cluster started here they import this very
checkout (PYTHONPATH); on an existing cluster (`ray_address`) the package is shipped with
Ray's runtime environment (`py_modules`), its dependencies come from the cluster image.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

from tqdm import tqdm

from magpie.executor import Step, batched, log_start
from magpie.records import InputError
from magpie.stage import Summary, quiet_libraries

log = logging.getLogger("magpie")

MAX_ATTEMPTS = 3  # tries per chunk before the run stops with its error
RESTART_TIMEOUT = 900  # seconds a dead replica may take to come back (reload its model)
MAX_ENTRIES = 4096  # journal entries per chunk at most (vLLM's own chunk in a local run)


def chunk_size_for(items: int, replicas: int, entries_per_item: int = 1) -> int:
    """Items per chunk: an equal share per replica (a chunk is one engine call, so it
    should fill the engine's batches as a local run does), at most MAX_ENTRIES journal
    entries (what a killed replica can lose); $MAGPIE_RAY_CHUNK_SIZE overrides."""
    env = os.environ.get("MAGPIE_RAY_CHUNK_SIZE")
    if env:
        return max(1, int(env))
    cap = max(1, MAX_ENTRIES // max(1, entries_per_item))
    return max(1, min(cap, -(-items // max(1, replicas))))


def _replica_class():
    import ray

    @ray.remote
    class Replica:
        """One model, loaded once; makes the entries of the chunks it is given."""

        def __init__(self, load: Callable[[], Any]):

            quiet_libraries()
            self.model = load()
            self.step_id = None
            self.step = None

        def make(self, step_id: str, step_ref: list, items: list) -> tuple[list, float]:
            # The step (records and settings) arrives once per replica, not per chunk.
            if step_id != self.step_id:
                self.step, self.step_id = ray.get(step_ref[0]), step_id
            start = time.time()
            made = list(self.step.make(self.model, items))
            return made, time.time() - start

        def pid(self) -> int:
            return os.getpid()

    return Replica


class RayExecutor:
    """Run steps on `num_replicas` replicas of their model on a Ray cluster.

    Args:
      address: an existing cluster ("ray://host:10001" or "auto"); None starts a local one.
      num_replicas: model replicas (actors); each holds `gpus_per_replica` GPUs.
      gpus_per_replica: GPUs per replica; None = `tensor_parallel_size` for vLLM, 1 for
        other local engines when the cluster has GPUs, else 0.
      cpus_per_replica: CPUs Ray reserves per replica (its torch threads on CPU).
      engine: the engine name (for the GPU default); tensor_parallel_size likewise.
    Raises InputError for settings the cluster cannot hold (more GPUs than it has).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_replicas: int = 1,
        gpus_per_replica: float | None = None,
        cpus_per_replica: float = 1,
        engine: str = "hf",
        tensor_parallel_size: int = 1,
    ):
        if num_replicas < 1:
            raise InputError(f"--num_replicas must be at least 1, not {num_replicas}")
        self.address, self.num_replicas = address, num_replicas
        self.gpus_per_replica, self.cpus_per_replica = gpus_per_replica, cpus_per_replica
        self.engine, self.tensor_parallel_size = engine, tensor_parallel_size
        self._pools: dict = {}

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        package = Path(__file__).resolve().parent  # the magpie package folder
        if self.address:
            runtime_env = {"py_modules": [str(package)]}
            ray.init(address=self.address, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:
            paths = [str(package.parent), os.environ.get("PYTHONPATH", "")]
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}}
            # Logical CPUs beyond the cores: replicas plus Ray's own tasks never wait on
            # each other (the replicas' threads share the machine anyway).
            cpus = max(os.cpu_count() or 1, int(self.num_replicas * self.cpus_per_replica) + 1)
            ray.init(
                num_cpus=cpus,
                runtime_env=runtime_env,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        log.info("ray: cluster resources %s", ray.cluster_resources())

    def _gpus(self) -> float:
        import ray

        if self.gpus_per_replica is not None:
            return self.gpus_per_replica
        if self.engine == "openai":
            return 0
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        if self.engine == "vllm":
            return self.tensor_parallel_size if has_gpus else 0
        return 1 if has_gpus else 0

    def pool(self, load: Callable[[], Any], needs_gpu: bool = True) -> list:
        """The replicas of `load`'s model, started on first use and kept until release;
        with GPUs only if the model `needs_gpu`."""
        if load in self._pools:
            return self._pools[load]
        import ray

        self._connect()
        gpus = self._gpus() if needs_gpu else 0
        available = ray.cluster_resources().get("GPU", 0)
        if gpus * self.num_replicas > available and gpus > 0:
            raise InputError(
                f"--num_replicas {self.num_replicas} x --gpus_per_replica {gpus} needs "
                f"{gpus * self.num_replicas:g} GPUs; the cluster has {available:g}"
            )
        replica = _replica_class().options(
            num_cpus=self.cpus_per_replica,
            num_gpus=gpus,
            max_restarts=-1,  # a killed replica comes back (loading its model again)
            max_task_retries=0,  # its chunk is requeued by the driver instead
        )
        log.info(
            "ray: %d replicas, %g GPUs and %g CPUs each",
            self.num_replicas,
            gpus,
            self.cpus_per_replica,
        )
        self._pools[load] = [replica.remote(load) for _ in range(self.num_replicas)]
        return self._pools[load]

    def release(self, load: Callable[[], Any]) -> None:
        """Stop the replicas of `load`'s model (frees their GPUs for the next model)."""
        import ray

        for actor in self._pools.pop(load, []):
            ray.kill(actor)

    def close(self) -> None:
        for load in list(self._pools):
            self.release(load)

    def run(self, step: Step, load: Callable[[], Any]) -> Summary:
        """Make what the journal lacks on the replicas, then the output (`step.finish`).
        Prints records/s per replica; raises the step's own error (InputError...) if a
        chunk fails for a reason other than a lost replica."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        journal = step.journal
        summary = step.summary()
        summary.resumed = len(journal.done)
        items = step.todo()
        total, done = step.progress()
        if isinstance(items, list):
            per_item = max(1, (total - done) // len(items)) if items else 1
            left = len(items)
        else:  # read lazily: the step says how many entries an item makes
            items = iter(items)
            first = next(items, None)
            items = chain([first], items) if first is not None else []
            per_item = max(1, step.entries_per_item)
            left = -(-(total - done) // per_item)
        if not left or not items:
            return step.finish(summary)
        log_start(step, total, done, f"Ray, {self.num_replicas} replicas")
        actors = self.pool(load, step.needs_gpu)
        size = chunk_size_for(left, len(actors), per_item)
        # Chunks are cut from the to-do list as replicas ask for them; the driver holds
        # only those queued for a retry and those in flight.
        fresh = enumerate(batched(items, size))
        chunks: dict[int, list] = {}
        step_ref = [ray.put(step)]
        step_id = f"{step.stage}/{id(step)}/{time.time()}"
        queue, idle, in_flight = deque(), deque(range(len(actors))), {}
        attempts: Counter = Counter()
        down_since: dict[int, float] = {}  # replica -> when it was found dead
        made_by: Counter = Counter()  # entries per replica
        busy: Counter = Counter()  # seconds per replica
        bar = tqdm(total=total, initial=done, desc=f"{step.stage} (ray)", unit=step.unit)
        try:
            while True:
                while fresh is not None and len(queue) < len(idle):
                    c, chunk = next(fresh, (None, None))
                    if chunk is None:
                        fresh = None
                        break
                    chunks[c] = chunk
                    queue.append(c)
                if not queue and not in_flight:
                    break
                while queue and idle:
                    c, a = queue.popleft(), idle.popleft()
                    ref = actors[a].make.remote(step_id, step_ref, chunks[c])
                    in_flight[ref] = (c, a)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    c, a = in_flight.pop(ref)
                    try:
                        result = ray.get(ref)
                    except (RayActorError, ActorUnavailableError) as e:
                        if getattr(e, "actor_init_failed", False):
                            _raise_load_error(step.stage, e)
                        # The replica died: Ray restarts it; until it answers a ping it gets
                        # no work, and its chunk goes first to the next free replica.
                        down_since.setdefault(a, time.time())
                        if c is None:
                            if time.time() - down_since[a] > RESTART_TIMEOUT:
                                log.warning("ray: replica %d did not come back; retired", a)
                                if not in_flight and not idle:
                                    raise RuntimeError(f"{step.stage}: no replica left") from e
                                continue
                            time.sleep(0.5)
                        else:
                            attempts[c] += 1
                            if attempts[c] >= MAX_ATTEMPTS:
                                raise RuntimeError(
                                    f"{step.stage}: chunk {c} lost its replica {attempts[c]} times"
                                ) from e
                            log.warning(
                                "ray: replica %d died (%s); its chunk %d goes back in the queue",
                                a,
                                type(e).__name__,
                                c,
                            )
                            queue.appendleft(c)
                        in_flight[actors[a].pid.remote()] = (None, a)
                        continue
                    except RayTaskError as e:
                        if isinstance(e.cause, InputError):
                            raise e.cause from None  # bad input: its one line, no traceback
                        raise
                    idle.append(a)
                    down_since.pop(a, None)
                    if c is None:  # a restarted replica answered its ping
                        continue
                    made, seconds = result
                    del chunks[c]
                    new = [(key, entry) for key, entry, _ in made if key not in journal.done]
                    journal.append_many(new)  # the chunk's commit: synced before going on
                    summary.tokens += sum(tokens for _, _, tokens in made)
                    made_by[a] += len(made)
                    busy[a] += seconds
                    bar.update(len(new))
                    bar.set_postfix_str(_rates(made_by, busy), refresh=False)
        finally:
            bar.close()
            journal.close()
        print(f"[{step.stage}] ray replicas: {_rates(made_by, busy)}")
        return step.finish(summary)


def _rates(made: Counter, busy: Counter) -> str:
    """'r0 12.3/s, r1 11.9/s': entries per second of work, per replica."""
    return ", ".join(
        f"r{k} {made[k] / busy[k]:.1f}/s" if busy[k] else f"r{k} -" for k in sorted(made)
    )


def _raise_load_error(stage: str, error: Exception):
    """A replica could not load its model (bad path, refused settings): its error, once."""
    last = str(error).strip().splitlines()[-1]
    prefix = f"{InputError.__module__}.{InputError.__name__}: "
    if last.startswith(prefix):
        raise InputError(last[len(prefix) :]) from None
    raise RuntimeError(f"{stage}: a replica could not load its model: {last}") from error
