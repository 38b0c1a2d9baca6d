"""The hand-over between transport callbacks and the ingest worker.

Callbacks must return at once, whatever the worker is doing: decoding or matching in a callback held a lock
that every other callback queued behind, and the transport dropped what queued behind them. So a callback only
appends the message here, in arrival order (which keeps labels and poses ahead of the images they describe),
and one worker takes them out. The queue is bounded in camera time: when the images held span more than
`sync.inbox_s` behind the newest image seen, the oldest image goes, counted (`lost_backlog` for a colour
image, which loses its set; `dropped_backlog_<stream>` for the others). A count bound covers every kind, the
small messages too. Messages that never arrived at all are counted `missed_<stream>` from the gaps in their
publisher's sequence numbers (core/ingest/sequence_gaps.py).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.image_codec import raw_nbytes
from dprecon_ros.core.ingest.sequence_gaps import SequenceGaps

IMAGE_STREAMS = ("rgb", "depth", "instance")


@dataclass
class Delivery:
    stream: str
    msg: object
    stamp: float  # header stamp for images (the bound is in camera time); unused for the others


class Inbox:
    def __init__(self, span_s: float, counters: EventCounters, max_messages: int = 10_000, jump_s: float = 30.0) -> None:
        """`max_messages` bounds every kind (poses and CameraInfo too); an image stamped more than `jump_s`
        before the newest restarts the camera clock (a bag restarted) instead of counting as backlog."""
        self.span_s, self.max_messages, self.jump_s = span_s, max_messages, jump_s
        self.counters = counters
        self._newest = -float("inf")
        self._taken_rgb = 0  # colour images handed to the worker and not yet done with
        self._items: deque[Delivery] = deque()
        self._images: deque[Delivery] = deque()  # the image deliveries of _items, oldest first
        self._dropped: set[int] = set()  # ids of image deliveries dropped for the bound but still in _items
        self._nbytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._gaps = SequenceGaps()

    def put(self, stream: str, msg, stamp: float = 0.0, publisher: Hashable | None = None, sequence: int | None = None) -> None:
        """Counts `received_<stream>`, and `missed_<stream>` when `publisher`'s `sequence` number skipped some;
        never blocks on the worker."""
        self.counters.count(f"received_{stream}", "", logging.DEBUG)
        delivery = Delivery(stream, msg, stamp)
        with self._cond:
            if missed := self._gaps.missed(stream, publisher, sequence):
                self.counters.count(
                    f"missed_{stream}",
                    f"{missed} {stream} message(s) sent never arrived (lost by the transport, or a subscription queue"
                    " overflowed: README, Camera-rate images)",
                    amount=missed,
                )
            self._items.append(delivery)
            if stream in IMAGE_STREAMS:
                self._images.append(delivery)
                self._nbytes += raw_nbytes(msg)
                if stamp < self._newest - self.jump_s:
                    self._newest = stamp  # the camera's clock went back: what waits is still taken, in order
                self._newest = max(self._newest, stamp)
                while self._images and self._newest - self._images[0].stamp > self.span_s:
                    self._drop(self._images.popleft(), "ingestion is behind the camera by more than sync.inbox_s")
            while len(self._items) - len(self._dropped) > self.max_messages:
                self._drop_oldest()
            self._cond.notify()

    def _drop(self, old: Delivery, why: str) -> None:
        self._dropped.add(id(old))
        if old.stream in IMAGE_STREAMS:
            self._nbytes -= raw_nbytes(old.msg)
        if old.stream == "rgb":
            self.counters.count("lost_backlog", f"{why}; oldest colour image dropped")
        else:
            self.counters.count(f"dropped_backlog_{old.stream}", "")

    def _drop_oldest(self) -> None:
        while self._items and id(self._items[0]) in self._dropped:
            self._dropped.discard(id(self._items.popleft()))
        old = self._items.popleft()
        if old.stream in IMAGE_STREAMS:
            self._images.popleft()  # the oldest image still held is this one
        self._drop(old, f"more than {self.max_messages} messages wait for ingestion")
        self._dropped.discard(id(old))  # already out of _items

    def get(self, timeout_s: float) -> Delivery | None:
        """The oldest delivery still wanted, or None after `timeout_s` (or once closed and empty)."""
        with self._cond:
            while True:
                while self._items:
                    delivery = self._items.popleft()
                    if id(delivery) in self._dropped:
                        self._dropped.discard(id(delivery))
                        continue
                    if delivery.stream in IMAGE_STREAMS:
                        self._images.popleft()
                        self._nbytes -= raw_nbytes(delivery.msg)
                    self._taken_rgb += delivery.stream == "rgb"
                    return delivery
                if self._closed or not self._cond.wait(timeout_s):
                    return None

    def done(self, delivery: Delivery) -> None:
        """The worker is through with a delivery from get(): a colour image is no longer in flight."""
        if delivery.stream == "rgb":
            with self._cond:
                self._taken_rgb -= 1

    def clear(self, reason: str) -> None:
        """Drop everything waiting; colour images are counted `lost_<reason>`."""
        with self._cond:
            for delivery in self._images:
                if delivery.stream == "rgb":
                    self.counters.count(f"lost_{reason}", "", logging.DEBUG)
            self._items.clear()
            self._images.clear()
            self._dropped.clear()
            self._nbytes = 0
            self._newest = -float("inf")  # a bag replayed after a reset starts the camera clock again

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def waiting_frames(self) -> int:
        """Colour images held here or taken by the worker and not yet through the assembler."""
        with self._cond:
            return sum(1 for d in self._images if d.stream == "rgb") + self._taken_rgb

    def __len__(self) -> int:
        with self._cond:
            return len(self._items) - len(self._dropped)
