"""The ingest worker: one thread from the inbox to keyframe selection, off the executor.

It takes deliveries in arrival order, feeds the assembler (which decodes only the sets whose pose is novel)
and hands each complete frame to the sink (the mapper's keyframe selection). Holding `lock` while it feeds
the assembler lets a reset or a map load replace the input state between two messages, never inside one.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.assembler import FrameAssembler
from dprecon_ros.core.ingest.inbox import Inbox
from dprecon_ros.core.types import Frame

log = logging.getLogger("dprecon_ros")
POLL_S = 0.1  # how often an idle worker looks at its stop flag


class IngestWorker:
    def __init__(
        self,
        inbox: Inbox,
        assembler: Callable[[], FrameAssembler],
        handlers: dict[str, Callable[[FrameAssembler, object], None]],
        sink: Callable[[Frame], object],
        lock: threading.Lock,
        counters: EventCounters,
        idle_flush_s: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        """`idle_flush_s`: after this long with no message, frames still waiting are resolved (a stream that
        stopped sends nothing that could complete them or show them hopeless)."""
        self.inbox, self.assembler, self.handlers, self.sink = inbox, assembler, handlers, sink
        self.lock, self.counters, self.idle_flush_s = lock, counters, idle_flush_s
        self._in_hand = 0  # frames out of the assembler and not yet through selection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dprecon_ingest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Stop after the message in hand; True if the thread ended in time."""
        self._stop.set()
        self.inbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def waiting_frames(self) -> int:
        """Colour frames received and not yet resolved, from the inbox to selection. Read it and the counters
        under `lock` for a consistent pair (a frame moves between them only under it)."""
        with self.lock:
            return self.waiting_frames_locked()

    def waiting_frames_locked(self) -> int:
        return self.inbox.waiting_frames + self.assembler().waiting_frames + self._in_hand

    def _run(self) -> None:
        last_message = time.monotonic()
        while not self._stop.is_set():
            delivery = self.inbox.get(POLL_S)
            try:  # nothing may end this thread: ingestion would stop while the node looks alive
                if delivery is not None:
                    self.process(delivery.stream, delivery.msg)
                    last_message = time.monotonic()
                elif time.monotonic() - last_message >= self.idle_flush_s():
                    last_message = float("inf")  # once per quiet period
                    self.flush()
            except Exception as exc:
                self.counters.count("input_error", f"ingestion failed: {exc!r}")
                log.debug(traceback.format_exc())
            finally:
                if delivery is not None:
                    self.inbox.done(delivery)

    def flush(self) -> None:
        """Resolve every frame still waiting: matched, labelled with what is known, or lost."""
        with self.lock:
            frames = self.assembler().pop_frames(flush=True)
            self._in_hand = len(frames)
        self._select(frames)

    def process(self, stream: str, msg) -> None:
        """One message through the assembler, and the frames it completed through selection."""
        with self.lock:
            assembler = self.assembler()
            try:
                self.handlers[stream](assembler, msg)
                frames = assembler.pop_frames()
            except Exception as exc:  # malformed input must never stop ingestion
                self.counters.count("input_error", f"{stream} message failed: {exc!r}")
                log.debug(traceback.format_exc())
                return
            self._in_hand = len(frames)
        self._select(frames)

    def _select(self, frames: list[Frame]) -> None:
        for frame in frames:
            try:
                self.sink(frame)
            except Exception as exc:  # a bad frame must never stop ingestion; it was counted as considered
                self.counters.count("selection_error", f"keyframe selection of the frame at {frame.stamp:.3f} failed: {exc!r}")
                log.debug(traceback.format_exc())
            finally:
                with self.lock:
                    self._in_hand -= 1
