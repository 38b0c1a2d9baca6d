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
ColorRGBA (16) always do; MeshTriangle (12) does with one or two sentinels, chosen by the array's parity.
"""

from __future__ import annotations

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


@dataclass
class _Splice:
    sentinel: bytes  # the placeholder elements as serialised
    count: int  # how many placeholder elements
    data: bytes  # the array, packed as the elements are
    length: int  # its element count
    elements: list  # the placeholder list itself, as the message holds it
    plain: Callable[[], list]  # every element built, for the rare message whose lengths cannot be located


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

    def serialize(self, msg) -> bytes:
        """The message's CDR with every placeholder run replaced by its array.

        Where the sequence's length sits is not known from the bytes alone: 8-aligned elements (Point) follow
        it directly or after 4 bytes of padding, and rclpy leaves padding uninitialised, so it may hold
        anything, a copy of the length included. So the message is serialised a second time with more
        placeholder elements in every sequence (a multiple of 8 bytes more, so every later field keeps its
        alignment): the length is the word that reads `count` in the first and `count + extra` in the second.
        Where both candidates still read so, the message is built in full instead."""
        first = bytearray(serialize_message(msg))
        if first[:2] != b"\x00\x01":
            raise ValueError("expected little-endian CDR from the RMW")
        extra = [_EXTRA[len(s.sentinel) // s.count] for s in self._splices]
        for splice, n in zip(self._splices, extra):
            splice.elements.extend([splice.elements[0]] * n)
        try:
            second = serialize_message(msg)
        finally:
            for splice, n in zip(self._splices, extra):
                del splice.elements[-n:]
        where = []
        for splice, n in zip(self._splices, extra):
            element = len(splice.sentinel) // splice.count
            at, at_second = _unique(first, splice.sentinel), _unique(second, splice.sentinel + splice.sentinel[:element] * n)
            gaps = [
                gap
                for gap in (4, 8)
                if first[at - gap : at - gap + 4] == struct.pack("<I", splice.count)
                and second[at_second - gap : at_second - gap + 4] == struct.pack("<I", splice.count + n)
            ]
            if not gaps:
                raise ValueError("no sequence length before a placeholder")
            if len(gaps) > 1:  # the padding happened to read as the length both times: build this one in full
                return self._plain(msg)
            where.append((at, gaps[0], splice))
        for at, gap, splice in sorted(where, key=lambda w: w[0], reverse=True):  # from the end: offsets stay valid
            first[at - gap : at - gap + 4] = struct.pack("<I", splice.length)
            first[at : at + len(splice.sentinel)] = splice.data
        return bytes(first)

    def _plain(self, msg) -> bytes:
        for splice in self._splices:
            splice.elements[:] = splice.plain()
        self._splices = []
        return serialize_message(msg)


def _unique(data: bytes | bytearray, pattern: bytes) -> int:
    at = data.find(pattern)
    if at < 0 or data.find(pattern, at + 1) >= 0:
        raise ValueError("a sequence placeholder is missing from the message or not unique")
    return at
