"""Open recon's exports in a fresh headless Blender scene and report what Blender sees.

Run it with Blender (the script is Blender's, not recon's: it imports nothing from recon)::

    blender -b --factory-startup --python scripts/check_blender.py -- EXPORT_DIR --report report.json
    python scripts/check_blender.py EXPORT_DIR --report report.json     # a Python with the bpy module

``EXPORT_DIR`` is a ``recon export`` output folder. Each file found there is imported into its own
empty scene with Blender's own importer and default options (what a user gets from File > Import):

* ``mesh.glb`` (glTF), ``mesh.obj`` (Wavefront), ``mesh.usdc`` and ``mesh.usdz`` (USD): mesh objects,
  face and vertex counts, the world-space bounding box in Blender units (metres), UV layers, and
  the image texture that feeds the material's Base Color (found by walking the node links back
  from the Material Output), its size and mean colour;
* ``splats.ply``: the Gaussian centres as a point cloud (vertex count, bounding box);
* ``cameras.usda`` (USD): every camera's lens, sensor, sensor fit, shift and world matrix, and the
  pinhole intrinsics Blender projects with at the camera's image size (from ``cameras.json``),
  read off Blender's own projection matrix; a time-sampled camera path is evaluated at each frame,
  with the scene's frame range and frame rate.

With ``--render NAME`` (a camera of ``cameras.json``) each mesh file is rendered with Cycles on the
CPU from that imported camera, at the camera's image size: one sample per pixel through the pixel
centre, the material's base colour (the Diffuse Color pass) with the coverage as alpha, written as
``render_<file>.png`` into ``--out``. ``--screenshot PNG`` renders ``mesh.glb`` lit by a sun and a
grey sky from the same camera (the picture in docs/export.md).

Blender builds without USD (Debian's Blender 3.4: ``bpy.app.build_options.usd`` is False) report
the USD files as skipped with that reason. The report is JSON; the script exits 1 when a file
that the build can import fails to import.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import traceback
from pathlib import Path

import bpy
import numpy as np

if bpy.app.version < (3, 6, 0) and "bool" not in np.__dict__:
    # Blender 3.4's glTF importer (io_scene_gltf2 3.4) still uses ``np.bool``, which numpy 1.24
    # removed; Debian 12 ships both. Restore the alias so its importer runs at all.
    np.bool = np.bool_  # type: ignore[attr-defined]

MESH_FILES = ("mesh.glb", "mesh.obj", "mesh.usdc", "mesh.usdz")


def has_usd() -> bool:
    return bool(getattr(bpy.app.build_options, "usd", False)) and hasattr(bpy.ops.wm, "usd_import")


def fresh_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def import_file(path: Path) -> None:
    """Import with Blender's own operator for the suffix, default options."""
    suffix = path.suffix.lower()
    p = str(path)
    if suffix in (".glb", ".gltf"):
        r = bpy.ops.import_scene.gltf(filepath=p)
    elif suffix == ".obj":
        r = bpy.ops.wm.obj_import(filepath=p)
    elif suffix == ".ply":
        if bpy.app.version >= (4, 0, 0):
            r = bpy.ops.wm.ply_import(filepath=p)
        else:
            r = bpy.ops.import_mesh.ply(filepath=p)
    elif suffix in (".usd", ".usda", ".usdc", ".usdz"):
        r = bpy.ops.wm.usd_import(filepath=p)
    else:
        raise ValueError(f"no importer for {path.name}")
    if "FINISHED" not in r:
        raise RuntimeError(f"importer returned {r}")


def world_vertices(obj) -> np.ndarray:
    me = obj.data
    co = np.empty(len(me.vertices) * 3, np.float64)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    M = np.array(obj.matrix_world, np.float64)
    return co @ M[:3, :3].T + M[:3, 3]


def upstream_images(node, seen=None) -> list:
    """Image texture nodes feeding ``node`` (through any chain of links)."""
    seen = set() if seen is None else seen
    out = []
    for sock in node.inputs:
        for link in sock.links:
            n = link.from_node
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.type == "TEX_IMAGE" and n.image is not None:
                out.append(n.image)
            out += upstream_images(n, seen)
    return out


def base_color_image(material):
    """The image that feeds the Base Color (or Color) of the shader wired to the Material Output."""
    tree = material.node_tree
    if tree is None:
        return None, "material has no node tree"
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    if not outputs:
        return None, "material has no Material Output node"
    surf = outputs[0].inputs["Surface"]
    if not surf.links:
        return None, "nothing is connected to the Material Output's Surface"
    shader = surf.links[0].from_node
    sock = shader.inputs.get("Base Color") or shader.inputs.get("Color")
    if sock is None:
        return None, f"the surface shader {shader.type} has no Base Color input"
    if not sock.links:
        return None, f"{shader.type} Base Color is a constant, not a texture"
    n = sock.links[0].from_node
    images = [n.image] if n.type == "TEX_IMAGE" and n.image is not None else upstream_images(n)
    if not images:
        return None, f"Base Color comes from {n.type}, with no image texture upstream"
    return images[0], None


def shader_values(material) -> dict:
    """Metallic and Roughness of the Principled BSDF (constants; a linked input reports None)."""
    tree = material.node_tree
    nodes = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"] if tree else []
    if not nodes:
        return {}
    out = {}
    for key in ("Metallic", "Roughness"):
        sock = nodes[0].inputs[key]
        out[key.lower()] = None if sock.links else float(sock.default_value)
    return out


def image_info(img) -> dict:
    w, h = int(img.size[0]), int(img.size[1])
    info = {"name": img.name, "size": [w, h], "packed": img.packed_file is not None, "filepath": img.filepath,
            "colorspace": img.colorspace_settings.name}
    if w and h:
        px = np.empty(w * h * img.channels, np.float32)
        img.pixels.foreach_get(px)
        px = px.reshape(h, w, img.channels)
        info["mean_rgb"] = [float(x) for x in px[..., :3].mean(axis=(0, 1))]  # as stored (sRGB values)
    return info


def mesh_report() -> dict:
    objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    rep: dict = {"objects": [], "types": sorted({o.type for o in bpy.context.scene.objects})}
    all_v = []
    for o in objs:
        v = world_vertices(o)
        all_v.append(v)
        entry = {"name": o.name, "faces": len(o.data.polygons), "vertices": len(o.data.vertices),
                 "uv_layers": len(o.data.uv_layers), "materials": []}
        if len(v):
            entry["bbox"] = [v.min(axis=0).tolist(), v.max(axis=0).tolist()]
        for m in o.data.materials:
            if m is None:
                continue
            img, why = base_color_image(m)
            entry["materials"].append({"name": m.name, "base_color_image": image_info(img) if img else None,
                                       "why_not": why, "shader": shader_values(m)})
        rep["objects"].append(entry)
    rep["mesh_objects"] = len(objs)
    rep["faces"] = sum(e["faces"] for e in rep["objects"])
    rep["vertices"] = sum(e["vertices"] for e in rep["objects"])
    if all_v and sum(len(v) for v in all_v):
        v = np.concatenate(all_v)
        rep["bbox"] = [v.min(axis=0).tolist(), v.max(axis=0).tolist()]
    rep["unit_scale"] = bpy.context.scene.unit_settings.scale_length
    return rep


def usd_name(name: str, seen: set) -> str:
    """The prim name recon gives a camera (a valid USD identifier, made unique)."""
    base = name if name[:1].isalpha() or name[:1] == "_" else "_" + name
    base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "camera"
    cand, i = base, 1
    while cand in seen:
        cand, i = f"{base}_{i}", i + 1
    seen.add(cand)
    return cand


def intrinsics(cam_obj, width: int, height: int) -> list:
    """Pinhole ``K`` (pixel centres at +0.5, OpenCV) that Blender projects with at ``width x height``."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    depsgraph = bpy.context.evaluated_depsgraph_get()
    P = np.array(cam_obj.calc_matrix_camera(depsgraph, x=width, y=height, scale_x=1.0, scale_y=1.0))
    fx, fy = P[0, 0] * width / 2, P[1, 1] * height / 2
    cx, cy = (1 - P[0, 2]) * width / 2, (1 + P[1, 2]) * height / 2
    return [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]


def camera_entry(o, width: int, height: int) -> dict:
    c = o.data
    return {
        "object": o.name, "lens_mm": c.lens, "sensor_width_mm": c.sensor_width, "sensor_height_mm": c.sensor_height,
        "sensor_fit": c.sensor_fit, "shift_x": c.shift_x, "shift_y": c.shift_y, "clip": [c.clip_start, c.clip_end],
        "matrix_world": [list(r) for r in o.matrix_world], "K": intrinsics(o, width, height),
        "width": width, "height": height,
    }


def cameras_report(export_dir: Path) -> dict:
    doc = json.loads((export_dir / "cameras.json").read_text())
    scene = bpy.context.scene
    by_name = {o.name: o for o in scene.objects if o.type == "CAMERA"}
    rep: dict = {"camera_objects": len(by_name), "cameras": {}, "missing": []}
    seen: set = set()
    for e in doc["cameras"]:
        n = usd_name(e["name"], seen)
        o = by_name.get(n)
        if o is None:
            rep["missing"].append(n)
            continue
        rep["cameras"][e["name"]] = camera_entry(o, int(e["width"]), int(e["height"]))
    path = doc.get("camera_path")
    if path:
        o = by_name.get("CameraPath")
        rep["path"] = {"frame_start": scene.frame_start, "frame_end": scene.frame_end,
                       "fps": scene.render.fps / scene.render.fps_base, "found": o is not None, "frames": []}
        if o is not None:
            rep["path"]["animated_object"] = bool(o.animation_data and o.animation_data.action)
            rep["path"]["animated_lens"] = bool(o.data.animation_data and o.data.animation_data.action)
            for i, fr in enumerate(path["frames"]):
                scene.frame_set(scene.frame_start + i)
                rep["path"]["frames"].append({"frame": scene.frame_current,
                                              **camera_entry(o, int(fr["width"]), int(fr["height"]))})
    return rep


def _render_layer_output(node, names):
    for n in names:
        if n in node.outputs:
            return node.outputs[n]
    raise KeyError(f"render layer has none of the outputs {names}")


def setup_albedo_compositor(scene) -> None:
    """Composite = the Diffuse Color pass with the render's alpha (Blender 3.x and 4.x/5.x APIs)."""
    bpy.context.view_layer.use_pass_diffuse_color = True
    if hasattr(scene, "compositing_node_group"):  # Blender 5
        tree = bpy.data.node_groups.new("recon_albedo", "CompositorNodeTree")
        scene.compositing_node_group = tree
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        out = tree.nodes.new("CompositorNodeComposite")
    rl = tree.nodes.new("CompositorNodeRLayers")
    sa = tree.nodes.new("CompositorNodeSetAlpha")
    if hasattr(sa, "mode"):
        sa.mode = "REPLACE_ALPHA"
    elif "Type" in sa.inputs:
        sa.inputs["Type"].default_value = "Replace Alpha"
    tree.links.new(_render_layer_output(rl, ("Diffuse Color", "DiffCol")), sa.inputs["Image"])
    tree.links.new(rl.outputs["Alpha"], sa.inputs["Alpha"])
    tree.links.new(sa.outputs["Image"], out.inputs[0])


def setup_render(scene, camera_obj, width: int, height: int, samples: int, path: Path) -> None:
    scene.camera = camera_obj
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    if hasattr(scene.cycles, "use_adaptive_sampling"):
        scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.filepath = str(path)
    scene.render.threads_mode = "AUTO"


def render_albedo(mesh_path: Path, cameras_path: Path, cam_usd_name: str, width: int, height: int, out: Path) -> dict:
    fresh_scene()
    import_file(mesh_path)
    import_file(cameras_path)
    scene = bpy.context.scene
    cam = scene.objects.get(cam_usd_name)
    if cam is None:
        raise RuntimeError(f"camera {cam_usd_name} not found after importing {cameras_path.name}")
    scene.frame_set(scene.frame_start)
    setup_render(scene, cam, width, height, 1, out)
    scene.cycles.filter_width = 0.01  # every sample through the pixel centre, as a ray caster
    scene.cycles.max_bounces = 0
    setup_albedo_compositor(scene)
    bpy.ops.render.render(write_still=True)
    return {"png": str(out), "camera": cam_usd_name, "size": [width, height]}


def render_screenshot(mesh_path: Path, cameras_path: Path, cam_usd_name: str, width: int, height: int, out: Path,
                      samples: int) -> dict:
    fresh_scene()
    import_file(mesh_path)
    import_file(cameras_path)
    scene = bpy.context.scene
    cam = scene.objects.get(cam_usd_name)
    setup_render(scene, cam, width, height, samples, out)
    scene.cycles.use_denoising = False
    world = bpy.data.worlds.new("recon_sky")
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    bg.inputs["Color"].default_value = (0.6, 0.62, 0.65, 1.0)
    bg.inputs["Strength"].default_value = 0.8
    scene.world = world
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    scene.render.film_transparent = False
    bpy.ops.render.render(write_still=True)
    return {"png": str(out), "camera": cam_usd_name, "size": [width, height], "samples": samples}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="check_blender.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--report", type=Path, required=True, help="JSON report to write")
    ap.add_argument("--out", type=Path, default=None, help="folder for renders (default: beside the report)")
    ap.add_argument("--render", default=None, help="name of a camera in cameras.json to render each mesh file from")
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG: mesh.glb lit, from the --render camera")
    ap.add_argument("--screenshot-scale", type=float, default=4.0, help="screenshot size / the camera's image size")
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples of the screenshot")
    args = ap.parse_args(argv)
    d = args.export_dir
    out_dir = args.out or args.report.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    usd = has_usd()
    report: dict = {"blender": bpy.app.version_string, "usd": usd, "files": {}, "renders": {}}
    failed = False
    no_usd = "this Blender build has no USD support (bpy.app.build_options.usd is False; no bpy.ops.wm.usd_import)"

    def run(name: str, fn):
        nonlocal failed
        path = d / name
        if not path.exists():
            report["files"][name] = {"present": False}
            return
        if path.suffix.startswith(".usd") and not usd:
            report["files"][name] = {"present": True, "skipped": no_usd}
            return
        fresh_scene()
        try:
            import_file(path)
            report["files"][name] = {"present": True, "imported": True, **fn()}
        except Exception as e:  # an importer error is a finding, not a crash of the check
            failed = True
            report["files"][name] = {"present": True, "imported": False, "error": f"{type(e).__name__}: {e}",
                                     "traceback": traceback.format_exc()[-2000:]}

    for name in MESH_FILES:
        run(name, mesh_report)
    run("splats.ply", mesh_report)
    if (d / "cameras.json").exists():
        run("cameras.usda", lambda: cameras_report(d))
    if args.render and not usd:
        report["renders"] = {"skipped": no_usd + ": the render camera comes from cameras.usda"}
    if args.render and usd and (d / "cameras.usda").exists():
        doc = json.loads((d / "cameras.json").read_text())
        seen: set = set()
        names = {e["name"]: (usd_name(e["name"], seen), e) for e in doc["cameras"]}
        if args.render not in names:
            raise SystemExit(f"--render {args.render}: no such camera in {d / 'cameras.json'}")
        cam_name, e = names[args.render]
        for name in MESH_FILES:
            if (d / name).exists():
                try:
                    report["renders"][name] = render_albedo(d / name, d / "cameras.usda", cam_name, int(e["width"]),
                                                            int(e["height"]), out_dir / f"render_{name.replace('.', '_')}.png")
                except Exception as ex:
                    failed = True
                    report["renders"][name] = {"error": f"{type(ex).__name__}: {ex}"}
        if args.screenshot is not None:
            s = args.screenshot_scale
            report["screenshot"] = render_screenshot(d / "mesh.glb", d / "cameras.usda", cam_name,
                                                     round(int(e["width"]) * s), round(int(e["height"]) * s),
                                                     args.screenshot, args.samples)
    args.report.write_text(json.dumps(report, indent=1))
    for name, r in report["files"].items():
        state = "skipped" if "skipped" in r else ("missing" if not r.get("present") else
                                                   ("ok" if r.get("imported") else "FAILED: " + r.get("error", "")))
        extra = ""
        if r.get("imported") and "faces" in r:
            extra = f" {r['mesh_objects']} mesh object(s), {r['faces']} faces, {r['vertices']} vertices"
        if r.get("imported") and "camera_objects" in r:
            extra = f" {r['camera_objects']} camera(s)"
        print(f"[blender {report['blender']}] {name}: {state}{extra}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    code = main(args)
    if bpy.app.background and "--" in sys.argv:
        sys.stdout.flush()
        import os

        os._exit(code)  # Blender's own exit code is 0 whatever the script returns
    sys.exit(code)
