"""A saved map is one directory: the keyframes, what association learnt, and the scene model, under a
versioned manifest. `~/save_map`, `~/load_map`, `dprecon-reconstruct --resume` and the node's persist
directory all use it, so a restarted node or the offline tool resumes exactly where the map was."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dprecon_ros.core.mapping.association import ObjectAssociator
from dprecon_ros.core.mapping.config import AssociationConfig
from dprecon_ros.core.mapping.keyframes import FILE_PREFIX, KeyframeBuffer, save_keyframe
from dprecon_ros.core.scene_model import SceneModel
from dprecon_ros.core.store.manifest import MANIFEST, MapFormatError, atomic_write_bytes, read_manifest, write_manifest
from dprecon_ros.core.store.scene_model_io import load_scene_model, save_scene_model
from dprecon_ros.core.types import Keyframe

ASSOCIATION_JSON = "association.json"
ASSOCIATION_ARRAYS = "association.npz"


@dataclass
class SavedMap:
    keyframes: list[Keyframe]
    associator: ObjectAssociator
    model: SceneModel
    missing_keyframes: list[str]  # listed by the manifest but gone (a persist directory evicts as it goes)


def save_association(associator: ObjectAssociator, directory: Path) -> list[str]:
    meta, arrays = associator.state()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(directory / ASSOCIATION_ARRAYS, buffer.getvalue())
    atomic_write_bytes(directory / ASSOCIATION_JSON, json.dumps(meta).encode())
    return [ASSOCIATION_JSON, ASSOCIATION_ARRAYS]


def load_association(directory: Path, config: AssociationConfig) -> ObjectAssociator:
    if not has_association(directory):
        raise MapFormatError(f"{directory}: the association state ({ASSOCIATION_JSON}, {ASSOCIATION_ARRAYS}) is missing")
    try:
        meta = json.loads((directory / ASSOCIATION_JSON).read_text())
        with np.load(directory / ASSOCIATION_ARRAYS, allow_pickle=False) as data:
            return ObjectAssociator.from_state(config, meta, data)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise MapFormatError(f"{directory}: association state unreadable ({type(exc).__name__}: {exc})") from None


def save_map(
    directory: str | Path, keyframes: list[Keyframe], associator: ObjectAssociator, model: SceneModel, rewrite_keyframes: bool = True
) -> list[str]:
    """Write the whole map; keyframe files no longer held are removed. `rewrite_keyframes=False` keeps keyframe
    files already there (the persist directory, which mirrors the buffer as keyframes arrive)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keyframe_files = []
    for kf in keyframes:
        name = f"{FILE_PREFIX}{kf.index:06d}.npz"
        if rewrite_keyframes or not (directory / name).exists():
            save_keyframe(directory / name, kf)
        keyframe_files.append(name)
    for stale in set(p.name for p in directory.glob(f"{FILE_PREFIX}*.npz")) - set(keyframe_files):
        (directory / stale).unlink(missing_ok=True)
    association = save_association(associator, directory)
    names = save_scene_model(model, directory)
    # Keyframes and association are listed, not checksummed: the persist directory rewrites them as keyframes
    # arrive between saves (their own formats catch damage: zip CRCs, JSON). A keyframe that went missing
    # only means its objects are refitted.
    write_manifest(directory, names, {"keyframe_files": keyframe_files, "association_files": association, "objects": len(model.objects)})
    return names + association + keyframe_files


def load_map(directory: str | Path, association: AssociationConfig) -> SavedMap:
    """The map saved in `directory`; MapFormatError if it is foreign, newer or damaged."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    keyframes = KeyframeBuffer.read_directory(directory)
    missing = [name for name in manifest.get("keyframe_files", []) if not (directory / name).is_file()]
    return SavedMap(keyframes, load_association(directory, association), load_scene_model(directory), missing)


def has_saved_map(directory: str | Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def has_association(directory: str | Path) -> bool:
    return (Path(directory) / ASSOCIATION_JSON).is_file() and (Path(directory) / ASSOCIATION_ARRAYS).is_file()
