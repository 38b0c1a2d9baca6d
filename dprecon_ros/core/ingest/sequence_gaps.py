"""Messages a publisher sent that never reached the node, found from gaps in its publication sequence numbers.

The RMW's message-lost event reports only some losses: with Fast DDS defaults at 30 Hz, colour images vanished
between two processes with no event at all, and a subscription queue that overflows drops the oldest message
silently. Every DDS writer numbers what it publishes, one by one, and the number comes with each message, so
a jump from n to n + k means k - 1 messages were sent and not received, whatever lost them. Messages lost
after the last one received cannot be seen this way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class SequenceGaps:
    def __init__(self, max_publishers: int = 64) -> None:
        """Remembers the last number of at most `max_publishers` (stream, publisher) pairs: publishers that come
        and go (a bag restarted, a driver respawned) never grow it without bound."""
        self.max_publishers = max_publishers
        self._last: OrderedDict[tuple[str, Hashable], int] = OrderedDict()

    def missed(self, stream: str, publisher: Hashable | None, sequence: int | None) -> int:
        """How many of `publisher`'s messages on `stream` went missing just before this one (0 without the
        numbers: an RMW that does not provide them, or a publisher's first message seen)."""
        if publisher is None or not sequence:
            return 0
        key = (stream, publisher)
        last = self._last.pop(key, None)
        self._last[key] = sequence
        while len(self._last) > self.max_publishers:
            self._last.popitem(last=False)
        if last is None or sequence <= last:  # first seen, or the writer started again
            return 0
        return sequence - last - 1
