"""`StageRunner`: a chain of named stages joined by bounded queues, each stage on its own threads.

The runner knows nothing about frames. It owns what every stage would otherwise repeat:

- bounded queues between stages (a full queue blocks the stage before it: memory stays bounded);
- stop propagation: `close()` puts one stop marker into the first queue; the last worker of a
  stage to see it passes it on, so every item put before `close()` goes through every stage;
- failure handling: a stage that raises stops the chain (`failure` holds the first exception,
  `on_failure` is told once); items behind it are not processed further, nothing waits forever;
- a watchdog: a stage with `timeout_s` that holds one item longer than that fails the chain
  (`check()`, called by whoever feeds the runner).

A stage's `process` returns the item for the next stage, or for a later one that `route(item)` names
(an error branch: e.g. a refused record skipping to the last stage); `put` routes the items it is fed
the same way. Per-item problems that are the input's fault are the stage's to answer as such an item;
an exception means the stage cannot go on. Routing keeps the stop guarantee: an item skipping ahead
is queued there before the stop marker that follows it through the stages in between.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_STOP = object()
_POLL_S = 0.05


class StageTimeout(RuntimeError):
    """A stage held one item longer than its `timeout_s`."""


@dataclass(frozen=True)
class Stage(Generic[T]):
    """One named step: one thread per entry of `processes`, each calling its own `process(item)`
    (e.g. one detector per thread); `queue_size` bounds the stage's input queue.

    `describe(item)` names an item in the watchdog's error; `timeout_s` (None: no limit) is how
    long one item may take before the chain is failed. `finish` (if given) is called once by the
    stage's last worker when the stop marker reaches it and the chain has not failed (e.g. to write
    what a stage holds back); it raising fails the chain.
    """

    name: str
    processes: tuple[Callable[[Any], Any], ...]
    queue_size: int = 1
    timeout_s: float | None = None
    describe: Callable[[Any], str] = repr
    finish: Callable[[], None] | None = None

    @classmethod
    def threads(cls, name: str, process: Callable[[Any], Any], workers: int = 1, **options: Any) -> Stage[T]:
        """`workers` threads sharing one (thread-safe) `process`."""
        return cls(name, (process,) * workers, **options)

    @property
    def workers(self) -> int:
        return len(self.processes)


class _StageState:
    def __init__(self, stage: Stage[Any]) -> None:
        self.stage = stage
        self.inbox: queue.Queue[Any] = queue.Queue(maxsize=stage.queue_size)
        self.threads: list[threading.Thread] = []
        self.running = stage.workers
        self.busy: dict[int, tuple[float, Any]] = {}  # worker thread ident -> (monotonic start, item)


class StageRunner:
    """Runs `stages` in order; `put` feeds the first, the last one's results are dropped.

    `route(item)` names the stage an item skips ahead to (None: it goes on in order); it is asked of
    every item `put` is given and every item a stage answers, and may only name a stage further on.
    """

    def __init__(
        self,
        stages: Sequence[Stage[Any]],
        on_failure: Callable[[BaseException], None] | None = None,
        route: Callable[[Any], str | None] = lambda item: None,
    ) -> None:
        if not stages or any(s.workers == 0 for s in stages):
            raise ValueError("a runner needs at least one stage, each with at least one worker")
        self.stages = list(stages)
        self.on_failure = on_failure
        self.route = route
        self._index = {s.name: i for i, s in enumerate(self.stages)}
        self._states = [_StageState(s) for s in self.stages]
        self._lock = threading.Lock()
        self._failed = threading.Event()
        self._failure: BaseException | None = None
        self._started = False

    # ------------------------------------------------------------------ control

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def depth(self, name: str) -> int:
        """Items waiting in the input queue of stage `name`."""
        return next(s.inbox.qsize() for s in self._states if s.stage.name == name)

    def start(self) -> None:
        if self._started:
            raise RuntimeError("runner already started")
        self._started = True
        for index, state in enumerate(self._states):
            for worker in range(state.stage.workers):
                name = state.stage.name if state.stage.workers == 1 else f"{state.stage.name}-{worker}"
                thread = threading.Thread(target=self._work, args=(index, worker), name=name, daemon=True)
                state.threads.append(thread)
                thread.start()

    def put(self, item: Any) -> bool:
        """Hand an item to the first stage (or the one `route` names), blocking while its queue is full;
        False once the chain failed."""
        if self._failed.is_set():
            return False
        return self._put(self._next(-1, item), item, force=False)

    def close(self) -> None:
        """No more items: let everything queued pass through every stage, then the threads end (see `join`)."""
        self._put(0, _STOP, force=True)

    def join(self) -> None:
        """Wait for every worker to end. The watchdog keeps running meanwhile; once it failed the
        chain, a worker stuck on one item (a daemon thread) is left behind instead of waited for."""
        while True:
            alive = [t for s in self._states for t in s.threads if t.is_alive()]
            if not alive:
                return
            self.check()
            if isinstance(self._failure, StageTimeout):
                stuck = {ident for s in self._states for ident in s.busy}
                if all(t.ident in stuck for t in alive):
                    return
            alive[0].join(_POLL_S)

    def fail(self, exc: BaseException) -> None:
        """Stop the chain on `exc` (the first failure wins)."""
        with self._lock:
            first = self._failure is None
            if first:
                self._failure = exc
        self._failed.set()
        if first and self.on_failure is not None:
            self.on_failure(exc)

    def check(self, now: float | None = None) -> None:
        """Fail the chain when a stage has held one item longer than its `timeout_s`."""
        now = time.monotonic() if now is None else now
        for state in self._states:
            limit = state.stage.timeout_s
            if limit is None:
                continue
            for started, item in list(state.busy.values()):
                if now - started > limit:
                    self.fail(StageTimeout(f"{state.stage.describe(item)} still in stage {state.stage.name} after {limit:g} s"))
                    return

    # ------------------------------------------------------------------ workers

    def _next(self, index: int, item: Any) -> int:
        """The stage an item leaving stage `index` (-1: fed by `put`) goes to."""
        name = self.route(item)
        if name is None:
            return index + 1
        target = self._index[name]
        if target <= index:
            raise ValueError(f"route sent an item of stage {self.stages[index].name} back to stage {name}")
        return target

    def _put(self, index: int, item: Any, force: bool) -> bool:
        """Blocking put into stage `index`'s queue. Gives up when the chain failed (an ordinary item)
        or when no worker of that stage is left to drain it (the stop marker)."""
        state = self._states[index]
        while True:
            try:
                state.inbox.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if self._failed.is_set() and not force:
                    return False
                if force and self._started and not any(t.is_alive() for t in state.threads):
                    return False

    def _work(self, index: int, worker: int) -> None:
        state = self._states[index]
        last_stage = index == len(self._states) - 1
        while True:
            item = state.inbox.get()
            if item is _STOP:
                with self._lock:
                    state.running -= 1
                    last_out = state.running == 0
                if last_out:
                    if state.stage.finish is not None and not self._failed.is_set():
                        try:
                            state.stage.finish()
                        except BaseException as exc:
                            self.fail(exc)
                    if not last_stage:
                        self._put(index + 1, _STOP, force=True)
                else:
                    state.inbox.put(_STOP)  # the stage's other workers see it too
                return
            if self._failed.is_set():
                continue  # drain without processing: the chain stopped, only the stop marker matters
            me = threading.get_ident()
            state.busy[me] = (time.monotonic(), item)
            try:
                result = state.stage.processes[worker](item)
            except BaseException as exc:  # the stage cannot go on: stop the chain
                self.fail(exc)
                continue
            finally:
                state.busy.pop(me, None)
            if not last_stage:
                try:
                    target = self._next(index, result)
                except BaseException as exc:
                    self.fail(exc)
                    continue
                self._put(target, result, force=False)
