"""The hand-over between transport callbacks and the ingest worker.

Callbacks must return at once, whatever the worker is doing: decoding or matching in a callback held a lock
that every other callback queued behind, and the transport dropped what queued behind them. So a callback only
appends the message here, in arrival order (which keeps labels and poses ahead of the images they describe),
and one worker takes them out. The queue is bounded in camera time: when the images held span more than
`sync.inbox_s`, the oldest image goes, counted (`lost_backlog` for a colour image, which loses its set;
`dropped_backlog_<stream>` for the others). Messages without pixels are small and always kept.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.image_codec import raw_nbytes

IMAGE_STREAMS = ("rgb", "depth", "instance")


@dataclass
class Delivery:
    stream: str
    msg: object
    stamp: float  # header stamp for images (the bound is in camera time); unused for the others


class Inbox:
    def __init__(self, span_s: float, counters: EventCounters) -> None:
        self.span_s = span_s
        self.counters = counters
        self._items: deque[Delivery] = deque()
        self._images: deque[Delivery] = deque()  # the image deliveries of _items, oldest first
        self._dropped: set[int] = set()  # ids of image deliveries dropped for the bound but still in _items
        self._nbytes = 0
        self._cond = threading.Condition()
        self._closed = False

    def put(self, stream: str, msg, stamp: float = 0.0) -> None:
        """Counts `received_<stream>`; never blocks on the worker."""
        self.counters.count(f"received_{stream}", "", logging.DEBUG)
        delivery = Delivery(stream, msg, stamp)
        with self._cond:
            self._items.append(delivery)
            if stream in IMAGE_STREAMS:
                self._images.append(delivery)
                self._nbytes += raw_nbytes(msg)
                self._enforce_bound(stamp)
            self._cond.notify()

    def _enforce_bound(self, newest: float) -> None:
        # abs(): after a jump back in time (a bag restarted) the old images are the ones to go as well
        while len(self._images) > 1 and abs(newest - self._images[0].stamp) > self.span_s:
            old = self._images.popleft()
            self._dropped.add(id(old))
            self._nbytes -= raw_nbytes(old.msg)
            if old.stream == "rgb":
                self.counters.count("lost_backlog", f"ingestion is {self.span_s} s behind the camera; oldest colour image dropped")
            else:
                self.counters.count(f"dropped_backlog_{old.stream}", "")

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
                    return delivery
                if self._closed or not self._cond.wait(timeout_s):
                    return None

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

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def waiting_frames(self) -> int:
        with self._cond:
            return sum(1 for d in self._images if d.stream == "rgb")

    def __len__(self) -> int:
        with self._cond:
            return len(self._items) - len(self._dropped)
