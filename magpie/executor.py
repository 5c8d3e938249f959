"""Steps and executors: what a stage computes apart from where it runs (datatrove's split).

A stage is a `Step` over work items (rounds of instructions, records to answer,
dialogues to extend, records to tag or embed). It says which items are still to do
(`todo`, from its journal) and makes the journal entries of a batch of items with a
model (`make`); `finish` turns the journal into the output file. An executor drives it:

- `LocalExecutor`: one process; the to-do list goes to the model in chunks of
  `LOCAL_CHUNK` items (the engine batches each), every entry is journaled as it is made.
- `magpie.ray_executor.RayExecutor`: replicas of the model on a Ray cluster, chunks of
  items handed out from a queue, each chunk committed to the same journal as it returns.

A record's text depends only on (run seed, stage, item, sample) (`magpie.engines.base.
item_seeds`), so both give the same records, in record order, whichever replica made
them. No stage keeps its own loop of engine calls, checkpoints and progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import chain, islice
from typing import Any

from tqdm import tqdm

from magpie.stage import Summary

log = logging.getLogger("magpie")

# One journal entry made by a step: (journal key, entry, completion tokens spent on it).
Made = tuple[Hashable, Any, int]


class Step:
    """Base of every stage's job. Subclasses set `stage`, `unit` and `journal` and define
    `todo`, `make` and `finish`. A step is shipped to Ray replicas without its journal
    (the driver alone writes it), so `make` must not touch `self.journal`."""

    stage = "step"
    unit = "rec"  # what the progress bar counts: one per journal entry
    needs_gpu = True  # whether its model wants GPUs on a Ray replica (where there are any)
    entries_per_item = (
        1  # journal entries one item makes at most (a round of n, a dialogue's turns)
    )
    journal = None

    def todo(self) -> Iterable:
        """The work items not yet in the journal, in order (picklable values): a list, or
        an iterator that reads them from the input as the executor asks (a step over
        millions of records holds none of them)."""
        raise NotImplementedError

    def make(self, model, items: list) -> Iterator[Made]:
        """Journal entries (key, entry, tokens) of these items, in any order, made with
        `model` (an engine, a tagger, a scorer: whatever the step's loader returns)."""
        raise NotImplementedError

    def progress(self) -> tuple[int, int]:
        """(entries in all, entries already journaled) for the progress bar: one entry
        per record unless the step says otherwise."""
        return len(self.records), len(self.journal.done)

    def summary(self) -> Summary:
        return Summary(self.stage, len(getattr(self, "records", ())))

    def finish(self, summary: Summary) -> Summary:
        """Write the output from the journal; fill in the summary's counts."""
        raise NotImplementedError

    def run(self, model) -> Summary:
        """Run here on an already loaded model (what tests and notebooks do)."""
        return LocalExecutor().run(self, lambda: model)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["journal"] = None  # the driver's: a file handle and a lock
        return state


# Items handed to a step's `make` at once by the local executor: enough for the engine to
# keep its batch full, few enough that a step over millions of records holds a bounded
# number of them (records made are journaled as they come, not held).
LOCAL_CHUNK = 4096


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to `size` consecutive items, read lazily from `items`."""
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


class LocalExecutor:
    """Run steps in this process. Models are loaded on first need and kept per loader
    (the same `load` object for several steps loads once) until `release`."""

    name = "local"

    def __init__(self) -> None:
        self._models: dict = {}

    def model(self, load: Callable[[], Any]):
        if load not in self._models:
            self._models[load] = load()
        return self._models[load]

    def release(self, load: Callable[[], Any]) -> None:
        """Drop the model `load` made (unitag frees the tagger before the reward model)."""
        self._models.pop(load, None)

    def close(self) -> None:
        self._models.clear()

    def run(self, step: Step, load: Callable[[], Any]) -> Summary:
        """Make what the journal lacks, then the output; the model loads only if needed."""
        journal = step.journal
        summary = step.summary()
        summary.resumed = len(journal.done)
        chunks = batched(step.todo(), LOCAL_CHUNK)
        first = next(chunks, None)
        total, done = step.progress()
        log_start(step, total, done, "this process")
        model = self.model(load) if first else None  # loaded before the bar starts
        chunks = chain([first], chunks) if first else iter(())
        del first  # held by the chain only until it is made
        bar = tqdm(total=total, initial=done, desc=step.stage, unit=step.unit)
        try:
            for items in chunks:
                for key, entry, tokens in step.make(model, items):
                    summary.tokens += tokens
                    if key not in journal.done:
                        journal.append(key, entry)
                        bar.update(1)
        finally:
            bar.close()
            journal.close()
        return step.finish(summary)


def log_start(step: Step, total: int, done: int, where: str) -> None:
    """The one line a stage prints as it starts: its work and where it runs."""
    resumed = f", {done} already made (resumed)" if done else ""
    log.info("[%s] start: %d %s to make%s; %s", step.stage, total - done, step.unit, resumed, where)
