"""Textured meshes written where viewers can load them: RViz2 and Foxglove show a MESH_RESOURCE marker from a
file:// URI, with the GLB's own material and texture.

Viewers cache a loaded mesh by its URI, so a file overwritten in place would keep showing its first version.
Each object version therefore gets its own file, `<id>_<label>.<map>.v<version>.glb`, and the file of the
object's previous version is deleted once the new one is written. `<map>` is new for every map the node
holds (start-up, reset, load), because versions start again with a new map. The directory belongs to the
node: files of this naming left by an earlier process or map are removed.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from dprecon_ros.core.types import ObjectReconstruction, Reconstruction
from dprecon_ros.io.export import BACKGROUND_NAME, glb_bytes, object_name

RESOURCE_SUBDIR = "mesh_resources"
RESOURCE_FILE = re.compile(r"^.+\.[0-9a-f]+\.v\d+\.glb(\.tmp)?$")  # what this module writes, and nothing else


def mesh_resource_dir(config) -> str:
    """Where textured GLBs go for viewers: `topics.mesh_resource_dir`, or <reconstruction.export_dir>/
    mesh_resources, or '' (none; also when `topics.mesh_resources` is off)."""
    if not config.topics.mesh_resources:
        return ""
    if config.topics.mesh_resource_dir:
        return config.topics.mesh_resource_dir
    if config.reconstruction.export_dir:
        return str(Path(config.reconstruction.export_dir) / RESOURCE_SUBDIR)
    return ""


class MeshResources:
    """Keeps `directory` holding one GLB per textured object of the current map, named by map and version."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.map_token = f"{time.time_ns():x}"
        self.written: dict[int, Path] = {}  # object id -> the file of its latest version
        self._lock = threading.Lock()
        self._remove_stale()

    def update(self, recon: Reconstruction) -> dict[int, str]:
        """Write the files of textured objects whose version is new, delete those of objects gone or no longer
        textured, and set each object's `mesh_uri`; returns object id -> URI. Errors propagate (the caller
        counts them and publishes without URIs)."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            present = [o for o in [*recon.objects, recon.background] if o is not None]
            uris: dict[int, str] = {}
            for obj in present:
                if not obj.is_textured:
                    continue
                name = self._name(obj, recon)
                path = self.directory / f"{name}.{self.map_token}.v{recon.versions.get(obj.object_id, 0)}.glb"
                if self.written.get(obj.object_id) != path or not path.exists():
                    tmp = path.with_name(path.name + ".tmp")
                    try:
                        tmp.write_bytes(glb_bytes(obj, name))
                        tmp.replace(path)  # a viewer never reads a half-written file
                    finally:
                        tmp.unlink(missing_ok=True)
                    old = self.written.get(obj.object_id)
                    if old is not None and old != path:
                        old.unlink(missing_ok=True)
                    self.written[obj.object_id] = path
                uris[obj.object_id] = path.resolve().as_uri()
            for object_id in set(self.written) - set(uris):
                self.written.pop(object_id).unlink(missing_ok=True)
            for obj in present:
                obj.mesh_uri = uris.get(obj.object_id, "")
            return uris

    def clear(self) -> None:
        """Delete every file of this map (a reset, a loaded map, a changed directory)."""
        with self._lock:
            for path in self.written.values():
                path.unlink(missing_ok=True)
            self.written.clear()

    def _remove_stale(self) -> None:
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.is_file() and RESOURCE_FILE.match(path.name):
                path.unlink(missing_ok=True)

    @staticmethod
    def _name(obj: ObjectReconstruction, recon: Reconstruction) -> str:
        return BACKGROUND_NAME if obj is recon.background else object_name(obj)
