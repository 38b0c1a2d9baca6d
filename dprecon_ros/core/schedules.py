"""Values that change over the steps of an optimisation, written `[start_step, start_value, end_value, end_step]`.

One helper resolves them, so stages never grow ad-hoc `if step > ...` branches: before `start_step` the value
is `start_value`, after `end_step` it is `end_value`, linear in between. A plain number is a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

Schedule = float | Sequence[float]


def schedule_value(schedule: Schedule, step: int) -> float:
    if isinstance(schedule, (int, float)):
        return float(schedule)
    start_step, start_value, end_value, end_step = (float(v) for v in schedule)
    if step <= start_step or end_step <= start_step:
        return start_value if step <= start_step else end_value
    if step >= end_step:
        return end_value
    fraction = (step - start_step) / (end_step - start_step)
    return start_value + fraction * (end_value - start_value)
