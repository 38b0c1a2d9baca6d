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

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.mapping.association import ObjectAssociator
from dprecon_ros.core.mapping.config import AssociationConfig
from dprecon_ros.core.mapping.keyframe_files import FILE_PREFIX, FILE_SUFFIX, keyframe_file_name, save_keyframe, scan_directory
from dprecon_ros.core.scene_model import SceneModel
from dprecon_ros.core.store.manifest import MANIFEST, MapFormatError, atomic_write_bytes, read_manifest, write_manifest
from dprecon_ros.core.store.scene_model_io import MODEL_ARRAYS, MODEL_JSON, load_scene_model, save_scene_model
from dprecon_ros.core.types import Keyframe

ASSOCIATION_JSON = "association.json"
ASSOCIATION_ARRAYS = "association.npz"


@dataclass
class SavedMap:
    keyframes: list[Keyframe]
    associator: ObjectAssociator
    model: SceneModel
    missing_keyframes: list[str]  # listed by the manifest but gone (a persist directory evicts as it goes)
    damaged_keyframes: list[str]  # present but unreadable, skipped (one line each: file and why)


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
        name = keyframe_file_name(kf.index)
        if rewrite_keyframes or not (directory / name).exists():
            save_keyframe(directory / name, kf)
        keyframe_files.append(name)
    for stale in set(p.name for p in directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")) - set(keyframe_files):
        (directory / stale).unlink(missing_ok=True)
    association = save_association(associator, directory)
    names = save_scene_model(model, directory)
    # Keyframes and association are listed, not checksummed: the persist directory rewrites them as keyframes
    # arrive between saves (their own formats catch damage: zip CRCs, JSON). A keyframe that went missing
    # only means its objects are refitted.
    write_manifest(directory, names, {"keyframe_files": keyframe_files, "association_files": association, "objects": len(model.objects)})
    return names + association + keyframe_files


def load_map(
    directory: str | Path, association: AssociationConfig, counters: EventCounters | None = None, move_aside: bool = False
) -> SavedMap:
    """The map saved in `directory`; MapFormatError if it is foreign, newer or damaged, or if not one of its
    keyframes can be read (a map without observations is no map: loading it would only empty the node's).
    Damaged keyframe files are skipped and counted; `move_aside` moves them out of the way (see
    `scan_directory`)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    scan = scan_directory(directory, counters, move_aside)
    if not scan.keyframes:
        why = f"all {len(scan.damaged)} keyframe files are damaged, e.g. {scan.damaged[0]}" if scan.damaged else "no keyframe files"
        raise MapFormatError(f"{directory}: no readable keyframe ({why}); nothing loaded")
    missing = [name for name in manifest.get("keyframe_files", []) if not (directory / name).is_file()]
    return SavedMap(scan.keyframes, load_association(directory, association), load_scene_model(directory), missing, scan.damaged)


def clear_map(directory: str | Path) -> None:
    """Remove a saved map (manifest first: a clear cut short leaves no map that looks complete). Files of
    other kinds, and damaged files moved aside, stay."""
    directory = Path(directory)
    (directory / MANIFEST).unlink(missing_ok=True)
    for path in directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"):
        path.unlink(missing_ok=True)
    for name in (ASSOCIATION_JSON, ASSOCIATION_ARRAYS, MODEL_JSON, MODEL_ARRAYS):
        (directory / name).unlink(missing_ok=True)


def has_saved_map(directory: str | Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def has_association(directory: str | Path) -> bool:
    return (Path(directory) / ASSOCIATION_JSON).is_file() and (Path(directory) / ASSOCIATION_ARRAYS).is_file()
