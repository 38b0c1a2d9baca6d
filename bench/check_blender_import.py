"""Import GLBs into Blender with its default glTF importer settings and report what a default render would
show: per mesh object, its material and whether the Principled BSDF's Base Color comes from an image texture.

    blender -b --factory-startup --python bench/check_blender_import.py -- out/demo/scene.glb [more.glb ...]

Prints one line per mesh object and a JSON summary; exits 1 when a mesh has no textured base colour.
(Debian 12's `apt-get install blender` gives Blender 3.4, the version the texture issue was reported on.)
"""

import json
import sys

import bpy  # Blender's own Python; this script runs inside Blender only
import numpy

# Debian 12 pairs Blender 3.4 with numpy 1.24, which dropped `numpy.bool`; Blender's own builds bundle an older
# numpy. The 3.4 glTF importer still uses the alias (when it sets face smoothing), so restore it: a fix of that
# packaging mismatch, not of the files under test.
if not hasattr(numpy, "bool"):
    numpy.bool = bool


def base_colour_image(material) -> tuple[str, list[int]] | None:
    """The image feeding the Principled BSDF's Base Color, as the default importer wires it, or None."""
    if material is None or not material.use_nodes:
        return None
    for node in material.node_tree.nodes:
        if node.type != "BSDF_PRINCIPLED":
            continue
        socket = node.inputs["Base Color"]
        for link in socket.links:
            source = link.from_node
            if source.type == "TEX_IMAGE" and source.image is not None:
                return source.image.name, list(source.image.size)
    return None


def main(paths: list[str]) -> int:
    report = []
    for path in paths:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.import_scene.gltf(filepath=path)  # the importer's defaults
        for obj in bpy.context.scene.objects:
            if obj.type != "MESH":
                continue
            material = obj.active_material
            image = base_colour_image(material)
            row = {"file": path, "object": obj.name, "material": material.name if material else None, "base_colour_image": image}
            print(f"{path}: {obj.name}: material {row['material']}, base colour image {image}")
            report.append(row)
    print(json.dumps(report))
    return 0 if report and all(r["base_colour_image"] for r in report) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []))
