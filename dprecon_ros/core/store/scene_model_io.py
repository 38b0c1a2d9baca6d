"""Scene model <-> two files: `scene_model.json` (structure, fingerprints, versions) and `scene_model.npz`
(meshes, field grids, the appearance network's weights, visibility). Modules come back on the CPU; the
stages move them to the run's device."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fields.composite import ColorNetwork
from dprecon_ros.core.fields.pyramid import PyramidSdf
from dprecon_ros.core.scene_model import ObjectState, SceneModel, VoxelGrid
from dprecon_ros.core.store.manifest import MapFormatError, atomic_write_bytes
from dprecon_ros.core.types import ObjectSeed, SceneNormalisation, TriangleMesh

MODEL_JSON = "scene_model.json"
MODEL_ARRAYS = "scene_model.npz"
MESH_EXTRAS = ("observed", "uv", "texture", "texel_provenance")  # optional TriangleMesh arrays, stored when present


def _box_meta(box: GridBox) -> dict:
    return {"origin": box.origin.cpu().tolist(), "voxel": box.voxel, "shape": list(box.shape)}


def _box_from(meta: dict) -> GridBox:
    return GridBox(torch.tensor(meta["origin"], dtype=torch.float32), float(meta["voxel"]), tuple(meta["shape"]))


def _state_meta(state: ObjectState, arrays: dict[str, np.ndarray]) -> dict:
    key = f"o{state.object_id}"
    meta = {
        "id": state.object_id,
        "label": state.label,
        "fingerprint": state.fingerprint,
        "version": state.version,
        "keyframe_ids": list(state.keyframe_ids),
        "observation_count": state.observation_count,
        "seed": None,
        "mesh": state.mesh is not None,
        "field": None,
        "prompt": state.prompt,
    }
    if state.seed is not None:
        s = state.seed
        meta["seed"] = {"lo": s.lo.tolist(), "hi": s.hi.tolist(), "observations": s.observations}
    if state.mesh is not None:
        arrays[f"{key}.vertices"], arrays[f"{key}.faces"], arrays[f"{key}.colors"] = (
            state.mesh.vertices,
            state.mesh.faces,
            state.mesh.vertex_colors,
        )
        for name in MESH_EXTRAS:
            if getattr(state.mesh, name) is not None:
                arrays[f"{key}.{name}"] = getattr(state.mesh, name)
    if state.field is not None:
        meta["field"] = {**_box_meta(state.field.box), "levels": len(state.field.levels)}
        for level, values in enumerate(state.field.levels):
            arrays[f"{key}.field.{level}"] = values.detach().float().cpu().numpy()
    return meta


def _state_from(meta: dict, arrays) -> ObjectState:
    key = f"o{meta['id']}"
    seed = None
    if meta["seed"] is not None:
        s = meta["seed"]
        seed = ObjectSeed(meta["id"], meta["label"], np.array(s["lo"]), np.array(s["hi"]), int(s["observations"]))
    mesh = None
    if meta["mesh"]:
        extras = {name: arrays[f"{key}.{name}"] for name in MESH_EXTRAS if f"{key}.{name}" in arrays}
        mesh = TriangleMesh(arrays[f"{key}.vertices"], arrays[f"{key}.faces"], arrays[f"{key}.colors"], **extras)
    field = None
    if meta["field"] is not None:
        if "levels" in meta["field"]:
            levels = [torch.from_numpy(arrays[f"{key}.field.{level}"]) for level in range(int(meta["field"]["levels"]))]
        else:  # format 1: one dense grid; it reads as a one-level pyramid and is refitted at the next change
            levels = [torch.from_numpy(arrays[f"{key}.field"])]
        field = PyramidSdf(_box_from(meta["field"]), levels)
    return ObjectState(
        int(meta["id"]),
        meta["label"],
        seed,
        meta["fingerprint"],
        int(meta["version"]),
        tuple(meta["keyframe_ids"]),
        int(meta["observation_count"]),
        field=field,
        mesh=mesh,
        prompt=str(meta.get("prompt", "")),
    )


def save_scene_model(model: SceneModel, directory: Path) -> list[str]:
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "revision": model.revision,
        "assembly_fingerprint": model.assembly_fingerprint,
        "stamp": model.stamp,
        "keyframe_ids": list(model.keyframe_ids),
        "normalisation": None,
        "log_beta": model.log_beta,
        "history": model.history,
        "objects": [_state_meta(model.objects[k], arrays) for k in sorted(model.objects)],
        "background": _state_meta(model.background, arrays) if model.background is not None else None,
        "appearance": None,
        "visibility": None,
        "prior_status": model.prior_status,
    }
    if model.normalisation is not None:
        meta["normalisation"] = {"center": model.normalisation.center.tolist(), "scale": model.normalisation.scale}
    if model.appearance is not None:
        a = model.appearance
        meta["appearance"] = {"box": _box_meta(a.box), "feature_dim": a.features.shape[0], "hidden": a.mlp[0].out_features}
        for name, tensor in a.state_dict().items():
            arrays[f"appearance.{name}"] = tensor.detach().float().cpu().numpy()
    if model.visibility is not None:
        v = model.visibility
        meta["visibility"] = {"origin": np.asarray(v.origin).tolist(), "voxel": v.voxel}
        arrays["visibility"] = v.values
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(directory / MODEL_ARRAYS, buffer.getvalue())
    atomic_write_bytes(directory / MODEL_JSON, json.dumps(meta).encode())
    return [MODEL_JSON, MODEL_ARRAYS]


def load_scene_model(directory: Path) -> SceneModel:
    try:
        meta = json.loads((directory / MODEL_JSON).read_text())
        with np.load(directory / MODEL_ARRAYS, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        model = SceneModel(
            objects={int(m["id"]): _state_from(m, arrays) for m in meta["objects"]},
            background=_state_from(meta["background"], arrays) if meta["background"] is not None else None,
            log_beta=meta["log_beta"],
            revision=int(meta["revision"]),
            assembly_fingerprint=str(meta.get("assembly_fingerprint", "")),
            stamp=float(meta["stamp"]),
            keyframe_ids=tuple(meta["keyframe_ids"]),
            history=list(meta["history"]),
            prior_status=str(meta.get("prior_status", "")),
        )
        if meta["normalisation"] is not None:
            model.normalisation = SceneNormalisation(np.array(meta["normalisation"]["center"]), float(meta["normalisation"]["scale"]))
        if meta["appearance"] is not None:
            a = meta["appearance"]
            net = ColorNetwork(_box_from(a["box"]), int(a["feature_dim"]), int(a["hidden"]))
            prefix = "appearance."
            net.load_state_dict({k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)})
            model.appearance = net
        if meta["visibility"] is not None:
            model.visibility = VoxelGrid(np.array(meta["visibility"]["origin"]), float(meta["visibility"]["voxel"]), arrays["visibility"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise MapFormatError(f"{directory}: scene model unreadable ({type(exc).__name__}: {exc})") from None
    return model
