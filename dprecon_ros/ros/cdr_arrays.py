"""Serialise messages whose large sequences (mesh points, colours, triangles) come from numpy arrays without
building a Python object per element.

A map's markers and objects hold a few hundred thousand Point / ColorRGBA / MeshTriangle elements. rclpy needs
one Python object for each, and building them every run took seconds and fragmented the allocator: a node
publishing the same map 40 times grew by 75 MB that never came back (pymalloc arenas kept alive by a few
survivors), which was the last creep of the memory soak.

Instead, each large sequence is given one or two sentinel elements with values no map produces; the message is
serialised by rclpy as usual, then each sentinel run is found in the bytes and replaced by the array's bytes,
with the sequence's length fixed. CDR aligns each value to its size (at most 8) from the start of the data,
so a splice keeps every later field's alignment when it shifts them by a multiple of 8: Point (24 bytes) and
ColorRGBA (16) always do; MeshTriangle (12) does with one or two sentinels, float32 (4) with two or three,
chosen by the array's parity.

Plain float32 sequences (per-vertex observedness) are held by the message as a copy (rclpy converts every
assigned value to its own array.array), so their placeholders cannot be grown in place like element lists;
they need not be: a 4-byte-aligned sequence's length always sits directly before its first element.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Point
from rclpy.serialization import serialize_message
from shape_msgs.msg import MeshTriangle
from std_msgs.msg import ColorRGBA

SMALL = 3  # sequences shorter than this are built as objects: nothing to save
_EXTRA = {24: 1, 16: 1, 12: 2}  # element bytes -> elements adding a multiple of 8 bytes
LENGTH_BYTES = 4  # a CDR sequence length is a uint32
LENGTH_GAPS = (4, 8)  # bytes from a length to its first element: none or 4 bytes of padding before 8-aligned ones
FLOAT_SENTINEL_BASE = -2.0e38  # float32 placeholders: far outside any value these sequences carry ([0, 1])
FLOAT_SENTINEL_STEP = 2.5e32  # distinct values per placeholder, far above float32's spacing there (about 2e31)


@dataclass
class _Splice:
    sentinel: bytes  # the placeholder elements as serialised
    count: int  # how many placeholder elements
    data: bytes  # the array, packed as the elements are
    length: int  # its element count
    elements: list | None = None  # the placeholder list itself, as the message holds it (element sequences)
    plain: Callable[[], list] | None = None  # every element built, for the rare message whose lengths cannot be located
    gap: int | None = None  # bytes from the length to the first element where CDR fixes them; None: to be located

    @property
    def element_bytes(self) -> int:
        return len(self.sentinel) // self.count


class PlainArrays:
    """The same calls as ArraySlots, building every element: for messages that are inspected, not published."""

    @staticmethod
    def points(xyz: np.ndarray) -> list[Point]:
        return [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in np.asarray(xyz, dtype=np.float64).reshape(-1, 3)]

    @staticmethod
    def colours(rgba: np.ndarray) -> list[ColorRGBA]:
        c = np.asarray(rgba, dtype=np.float32).reshape(-1, 4)
        return [ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a)) for r, g, b, a in c]

    @staticmethod
    def triangles(faces: np.ndarray) -> list[MeshTriangle]:
        return [MeshTriangle(vertex_indices=[int(i) for i in f]) for f in np.asarray(faces).reshape(-1, 3)]

    @staticmethod
    def floats(values: np.ndarray) -> array.array:
        """A float32[] field's value (what rclpy stores it as)."""
        return array.array("f", np.ascontiguousarray(values, dtype=np.float32).reshape(-1).tobytes())


class ArraySlots:
    """Collects the arrays of one message; `serialize(msg)` returns its CDR with the arrays in place."""

    def __init__(self) -> None:
        self._splices: list[_Splice] = []

    def _next(self) -> int:
        return len(self._splices)

    def points(self, xyz: np.ndarray) -> list[Point]:
        xyz = np.ascontiguousarray(xyz, dtype="<f8").reshape(-1, 3)
        if len(xyz) < SMALL:
            return PlainArrays.points(xyz)
        k = self._next()
        values = (-1.0e300 - k * 1.0e285, 3.25e-300, -4.75e-300)
        elements = [Point(x=values[0], y=values[1], z=values[2])]
        self._splices.append(_Splice(struct.pack("<3d", *values), 1, xyz.tobytes(), len(xyz), elements, lambda: PlainArrays.points(xyz)))
        return elements

    def colours(self, rgba: np.ndarray) -> list[ColorRGBA]:
        """`rgba`: floats in [0, 1], one row per element."""
        rgba = np.ascontiguousarray(rgba, dtype="<f4").reshape(-1, 4)
        if len(rgba) < SMALL:
            return PlainArrays.colours(rgba)
        k = self._next()
        values = np.array([-1.0e38 - k * 1.0e32, -2.5e37, 1.5e-38, -7.5e37], dtype="<f4")
        elements = [ColorRGBA(r=float(values[0]), g=float(values[1]), b=float(values[2]), a=float(values[3]))]
        self._splices.append(_Splice(values.tobytes(), 1, rgba.tobytes(), len(rgba), elements, lambda: PlainArrays.colours(rgba)))
        return elements

    def triangles(self, faces: np.ndarray) -> list[MeshTriangle]:
        faces = np.ascontiguousarray(faces, dtype="<u4").reshape(-1, 3)
        if len(faces) < SMALL:
            return PlainArrays.triangles(faces)
        count = 1 if (len(faces) - 1) % 2 == 0 else 2  # the shift, 12 * (length - count), is a multiple of 8
        k = self._next()
        sentinel = np.array(
            [[0xFFFFFF00 - 6 * k - 3 * j, 0xFFFFFF01 - 6 * k - 3 * j, 0xFFFFFF02 - 6 * k - 3 * j] for j in range(count)], dtype="<u4"
        )
        elements = [MeshTriangle(vertex_indices=[int(i) for i in row]) for row in sentinel]
        self._splices.append(
            _Splice(sentinel.tobytes(), count, faces.tobytes(), len(faces), elements, lambda: PlainArrays.triangles(faces))
        )
        return elements

    def floats(self, values: np.ndarray) -> array.array:
        """A float32[] field (`values` in a range far from the placeholders, e.g. [0, 1]). The message copies
        what it is given, so this placeholder is found by its values alone, its length right before it."""
        values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        if len(values) < SMALL:
            return PlainArrays.floats(values)
        count = 2 if len(values) % 2 == 0 else 3  # the shift, 4 * (length - count), is a multiple of 8
        k = self._next()
        sentinel = np.array([FLOAT_SENTINEL_BASE - (4 * k + j) * FLOAT_SENTINEL_STEP for j in range(count)], dtype="<f4")
        self._splices.append(_Splice(sentinel.tobytes(), count, values.tobytes(), len(values), gap=LENGTH_BYTES))
        return PlainArrays.floats(sentinel)

    def serialize(self, msg) -> bytes:
        """The message's CDR with every placeholder run replaced by its array.

        Where an element sequence's length sits is not known from the bytes alone: 8-aligned elements (Point)
        follow it directly or after 4 bytes of padding, and rclpy leaves padding uninitialised, so it may hold
        anything, a copy of the length included. So the message is serialised a second time with more
        placeholder elements in every such sequence (a multiple of 8 bytes more, so every later field keeps
        its alignment): the length is the word that reads `count` in the first and `count + extra` in the
        second. Where both candidates still read so, those sequences are built in full instead."""
        first = bytearray(serialize_message(msg))
        if first[:2] != b"\x00\x01":
            raise ValueError("expected little-endian CDR from the RMW")
        where = self._locate_element_lists(msg, first)
        if where is None:  # the padding happened to read as the length both times
            return self._plain(msg)
        return _apply(first, where + self._locate_fixed(first))

    def _element_lists(self) -> list[_Splice]:
        return [s for s in self._splices if s.gap is None]

    def _locate_element_lists(self, msg, first: bytearray) -> list[tuple[int, int, _Splice]] | None:
        """(offset, gap, splice) of each element-list placeholder in `first`; None where one is ambiguous."""
        splices = self._element_lists()
        if not splices:  # nothing to locate: no second serialisation
            return []
        extra = [_EXTRA[s.element_bytes] for s in splices]
        for splice, n in zip(splices, extra):
            splice.elements.extend([splice.elements[0]] * n)
        try:
            second = serialize_message(msg)
        finally:
            for splice, n in zip(splices, extra):
                del splice.elements[-n:]
        where = []
        for splice, n in zip(splices, extra):
            at = _unique(first, splice.sentinel)
            at_second = _unique(second, splice.sentinel + splice.sentinel[: splice.element_bytes] * n)
            gaps = [
                gap for gap in LENGTH_GAPS if _reads(first, at - gap, splice.count) and _reads(second, at_second - gap, splice.count + n)
            ]
            if not gaps:
                raise ValueError("no sequence length before a placeholder")
            if len(gaps) > 1:
                return None
            where.append((at, gaps[0], splice))
        return where

    def _locate_fixed(self, data: bytearray) -> list[tuple[int, int, _Splice]]:
        """(offset, gap, splice) of each placeholder whose length CDR puts at a fixed distance before it."""
        where = []
        for splice in self._splices:
            if splice.gap is None:
                continue
            at = _unique(data, splice.sentinel)
            if not _reads(data, at - splice.gap, splice.count):
                raise ValueError("no sequence length before a placeholder")
            where.append((at, splice.gap, splice))
        return where

    def _plain(self, msg) -> bytes:
        """The message with its element lists built in full; float placeholders are still spliced."""
        for splice in self._element_lists():
            splice.elements[:] = splice.plain()
        self._splices = [s for s in self._splices if s.gap is not None]
        data = bytearray(serialize_message(msg))
        return _apply(data, self._locate_fixed(data))


def _reads(data: bytes | bytearray, at: int, value: int) -> bool:
    return at >= 0 and data[at : at + LENGTH_BYTES] == struct.pack("<I", value)


def _apply(data: bytearray, where: list[tuple[int, int, _Splice]]) -> bytes:
    """Each placeholder run replaced by its array and its length set, from the end so offsets stay valid."""
    for at, gap, splice in sorted(where, key=lambda w: w[0], reverse=True):
        data[at - gap : at - gap + LENGTH_BYTES] = struct.pack("<I", splice.length)
        data[at : at + len(splice.sentinel)] = splice.data
    return bytes(data)


def _unique(data: bytes | bytearray, pattern: bytes) -> int:
    at = data.find(pattern)
    if at < 0 or data.find(pattern, at + 1) >= 0:
        raise ValueError("a sequence placeholder is missing from the message or not unique")
    return at
