"""Textured meshes written where viewers can load them: RViz2 and Foxglove show a MESH_RESOURCE marker from a
file:// URI, with the GLB's own material and texture.

Viewers cache a loaded mesh by its URI, so a file overwritten in place would keep showing its first version;
each object version therefore gets its own file, `<id>_<label>.v<version>.glb`, and the previous versions of
that object are deleted once the new one is written.
"""

from __future__ import annotations

from pathlib import Path

from dprecon_ros.core.types import ObjectReconstruction, Reconstruction
from dprecon_ros.io.export import BACKGROUND_NAME, glb_bytes, object_name

RESOURCE_SUBDIR = "mesh_resources"


def mesh_resource_dir(config) -> str:
    """`topics.mesh_resource_dir`, or <reconstruction.export_dir>/mesh_resources, or '' (none)."""
    if config.topics.mesh_resource_dir:
        return config.topics.mesh_resource_dir
    if config.reconstruction.export_dir:
        return str(Path(config.reconstruction.export_dir) / RESOURCE_SUBDIR)
    return ""


class MeshResources:
    """Keeps `directory` holding one GLB per textured object of the latest map, named by version."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.written: dict[int, Path] = {}  # object id -> the file of its latest version

    def update(self, recon: Reconstruction) -> dict[int, str]:
        """Write the files of textured objects whose version is new, delete those of objects gone or no longer
        textured, and set each object's `mesh_uri`; returns object id -> URI. OSError propagates (the caller
        counts it and publishes without URIs)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        present = [o for o in [*recon.objects, recon.background] if o is not None]
        uris: dict[int, str] = {}
        for obj in present:
            if not obj.is_textured:
                continue
            path = self.directory / f"{self._name(obj, recon)}.v{recon.versions.get(obj.object_id, 0)}.glb"
            if self.written.get(obj.object_id) != path or not path.exists():
                tmp = path.with_suffix(".glb.tmp")
                tmp.write_bytes(glb_bytes(obj, self._name(obj, recon)))
                tmp.replace(path)  # a viewer never reads a half-written file
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

    @staticmethod
    def _name(obj: ObjectReconstruction, recon: Reconstruction) -> str:
        return BACKGROUND_NAME if obj is recon.background else object_name(obj)
