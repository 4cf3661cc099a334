"""The built-in scenes: geometry, textures, light, camera rigs and motion, all from one seed.

World frame: +z up, units are nominal metres. Cameras are OpenCV camera-to-world 4x4 float64.
The seed drives every texture and the camera rig's phase/jitter; the object layout is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from recon.scene.conventions import look_at_c2w
from scenes import meshes as M
from scenes.textures import procedural_texture


@dataclass
class Part:
    """One textured surface: a mesh (at rest), its texture and the object it belongs to."""

    name: str
    object_id: int
    mesh: M.MeshData
    texture: np.ndarray  # [T, T, 3] uint8


@dataclass
class Light:
    """Lambertian lighting: ``albedo * (ambient + diffuse * max(0, n.l) * visible)``.

    ``kind`` is "directional" (``vector`` points towards the light) or "point" (``vector`` is the
    light position; no fall-off). ``shadows``: cast shadow rays.
    """

    kind: str
    vector: tuple[float, float, float]
    ambient: float = 0.55
    diffuse: float = 0.55
    shadows: bool = True

    def to_json(self) -> dict:
        return {"type": self.kind, ("direction" if self.kind == "directional" else "position"): list(self.vector),
                "ambient": self.ambient, "diffuse": self.diffuse, "shadows": self.shadows,
                "model": "rgb = albedo * (ambient + diffuse * max(0, n.l) * unshadowed)"}


@dataclass
class Recipe:
    """A scene ready to render.

    Attributes:
        name, seed: what built it.
        parts: every textured surface, at rest (time 0 pose for moving objects).
        objects: object id (1..) -> name; 0 is background.
        motions: object id -> ``f(time) -> [4, 4]`` world transform applied to its rest mesh.
        light: the fixed light.
        background: RGB in [0, 1] where no surface is hit (``None`` for closed scenes).
        fov_x: horizontal field of view in radians.
        rig: ``(views, rng) -> (c2w [N, 4, 4], times [N] or None)`` dataset cameras.
        path: ``(n) -> (c2w [n, 4, 4], times [n] or None)`` a smooth camera path for videos.
        kind: "object" (360 around an object) or "forward" (LLFF-like, forward-facing).
    """

    name: str
    seed: int
    parts: list[Part]
    objects: dict[int, str]
    light: Light
    background: Optional[tuple[float, float, float]]
    fov_x: float
    rig: Callable
    path: Callable
    kind: str
    motions: dict[int, Callable[[float], np.ndarray]] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return bool(self.motions)

    def object_transform(self, object_id: int, time: float) -> np.ndarray:
        f = self.motions.get(object_id)
        return np.eye(4) if f is None else f(float(time))

    def meshes_at(self, time: float = 0.0) -> list[M.MeshData]:
        """World-space meshes of all parts at ``time``."""
        return [p.mesh if p.object_id not in self.motions else p.mesh.transformed(self.object_transform(p.object_id, time))
                for p in self.parts]


def _tex(rng: np.random.Generator, size: int, detail: float = 1.0, muted: float = 0.0) -> np.ndarray:
    # Each texture draws from its own child generator so changing one never shifts the others.
    return procedural_texture(np.random.default_rng(rng.integers(2**63)), size, detail, muted)


# ---------------------------------------------------------------- turntable (and dynamic) --

TURNTABLE_TARGET = np.array([0.0, 0.0, 0.1])
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def _turntable_parts(rng: np.random.Generator) -> tuple[list[Part], dict[int, str]]:
    parts: list[Part] = []
    # 1: pedestal = column + slab; the sculpture stands on the slab top at z = 0.
    column = M.frustum(0.62, 0.52, 0.6, n=64, center=(0, 0, -0.7))
    slab = M.box((1.5, 1.5, 0.1), center=(0, 0, -0.05), seg=8)
    parts += [Part("pedestal_column", 1, column, _tex(rng, 512)), Part("pedestal_slab", 1, slab, _tex(rng, 1024))]

    # 2: a blobby sculpture (sphere with smooth radial bumps).
    def bumps(d):
        return 1.0 + 0.12 * np.sin(3 * d[:, 0] + 1.0) * np.cos(4 * d[:, 1]) + 0.08 * np.sin(5 * d[:, 2] + 2 * d[:, 0])

    blob = M.uv_sphere(0.3, 96, 48, center=(-0.36, -0.33, 0.34), displace=bumps)
    parts.append(Part("blob", 2, blob, _tex(rng, 512)))
    # 3: a vertical torus knot on a thin post.
    knot = M.torus_knot(2, 3, scale=0.1, tube_radius=0.045).transformed(M.rotation((1, 0, 0), np.pi / 2))
    knot = knot.transformed(M.translation((0.36, 0.33, 0.48)))
    post = M.frustum(0.03, 0.03, 0.2, n=16, center=(0.36, 0.33, 0.0))
    parts += [Part("knot", 3, knot, _tex(rng, 512)), Part("knot_post", 3, post, _tex(rng, 256))]
    # 4: a rotated cube.
    cube = M.box((0.38, 0.38, 0.38), seg=6).transformed(M.rotation((0, 0, 1), 0.45))
    cube = cube.transformed(M.translation((0.36, -0.36, 0.19)))
    parts.append(Part("cube", 4, cube, _tex(rng, 512)))
    # 5: a cone.
    cone = M.frustum(0.22, 0.02, 0.7, n=64, center=(-0.36, 0.36, 0.0))
    parts.append(Part("cone", 5, cone, _tex(rng, 512)))
    # 6: a standing ring in the middle.
    ring = M.torus(0.17, 0.055, 96, 24).transformed(M.rotation((1, 0, 0), np.pi / 2))
    ring = ring.transformed(M.translation((0.04, 0.0, 0.23)))
    parts.append(Part("ring", 6, ring, _tex(rng, 512)))
    objects = {1: "pedestal", 2: "blob", 3: "knot", 4: "cube", 5: "cone", 6: "ring"}
    return parts, objects


def _sphere_rig(n: int, rng: np.random.Generator, radius: float = 3.6, el_range=(0.0, 70.0)):
    """Cameras on a band of the upper hemisphere: a Fibonacci spiral (even coverage) looking at the target."""
    lo, hi = np.sin(np.radians(el_range[0])), np.sin(np.radians(el_range[1]))
    phase = rng.uniform(0, 2 * np.pi)
    c2ws = []
    for i in range(n):
        el = np.arcsin(lo + (hi - lo) * (i + 0.5) / n)
        az = phase + i * GOLDEN_ANGLE
        r = radius * (1.0 + 0.05 * rng.uniform(-1, 1))
        eye = TURNTABLE_TARGET + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        c2ws.append(look_at_c2w(eye, TURNTABLE_TARGET + rng.normal(0, 0.03, 3)))
    return np.stack(c2ws)


def _orbit_path(n: int, radius: float = 3.6):
    """One smooth 360-degree orbit with elevation swinging between 10 and 45 degrees."""
    s = np.arange(n) / n
    c2ws = []
    for si in s:
        az, el = 2 * np.pi * si, np.radians(27.5 - 17.5 * np.cos(2 * np.pi * si))
        eye = TURNTABLE_TARGET + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        c2ws.append(look_at_c2w(eye, TURNTABLE_TARGET))
    return np.stack(c2ws)


def turntable(seed: int = 0) -> Recipe:
    """A textured sculpture group on a pedestal, white background, cameras all around (upper hemisphere)."""
    rng = np.random.default_rng(seed)
    parts, objects = _turntable_parts(rng)
    return Recipe(
        name="turntable", seed=seed, parts=parts, objects=objects,
        light=Light("directional", tuple(np.round(np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70]), 6))),
        background=(1.0, 1.0, 1.0), fov_x=np.radians(40.0),
        rig=lambda n: (_sphere_rig(n, np.random.default_rng([seed, 1])), None),
        path=lambda n: (_orbit_path(n), None), kind="object",
    )


def dynamic(seed: int = 0) -> Recipe:
    """The turntable with motion over time in [0, 1]: an orbiting, spinning moon and a cube turning 90 degrees."""
    rng = np.random.default_rng(seed)
    parts, objects = _turntable_parts(rng)
    moon = M.uv_sphere(0.13, 64, 32)
    parts.append(Part("moon", 7, moon, _tex(rng, 512)))
    objects[7] = "moon"
    cube_center = np.array([0.36, -0.36, 0.19])

    def moon_motion(t: float) -> np.ndarray:
        ang = 2 * np.pi * t  # one orbit over the sequence
        pos = np.array([0.62 * np.cos(ang), 0.62 * np.sin(ang), 0.95 + 0.12 * np.sin(4 * np.pi * t)])
        return M.translation(pos) @ M.rotation((0.3, 0.2, 1.0), 3 * np.pi * t)

    def cube_motion(t: float) -> np.ndarray:
        return M.translation(cube_center) @ M.rotation((0, 0, 1), 0.5 * np.pi * t) @ M.translation(-cube_center)

    def rig(n):
        c2w = _sphere_rig(n, np.random.default_rng([seed, 1]))
        return c2w, np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)

    def path(n):
        return _orbit_path(n), (np.arange(n) / max(n - 1, 1))

    return Recipe(
        name="dynamic", seed=seed, parts=parts, objects=objects,
        light=Light("directional", tuple(np.round(np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70]), 6))),
        background=(1.0, 1.0, 1.0), fov_x=np.radians(40.0), rig=rig, path=path, kind="object",
        motions={7: moon_motion, 4: cube_motion},
    )


RIG_CAMERAS = 8
"""Fixed cameras of the ``dynamic-rig`` capture stage."""


def stage_rig(k: int = RIG_CAMERAS, radius: float = 3.6) -> np.ndarray:
    """``k`` fixed cameras ``[k, 4, 4]`` of a capture stage around the turntable target: alternately
    at 15 and 45 degrees of elevation, evenly spread in azimuth, all looking at the target."""
    c2ws = []
    for j in range(k):
        az = 2 * np.pi * j / k + 0.3
        el = np.radians(15.0 if j % 2 == 0 else 45.0)
        eye = TURNTABLE_TARGET + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        c2ws.append(look_at_c2w(eye, TURNTABLE_TARGET))
    return np.stack(c2ws)


def dynamic_rig(seed: int = 0) -> Recipe:
    """The ``dynamic`` scene seen by a capture stage: :data:`RIG_CAMERAS` fixed cameras, all
    recording every time step (K cameras x T times, view ``i`` = camera ``i % K`` at time step
    ``i // K`` of ``T = ceil(N / K)``, times evenly spaced over [0, 1])."""
    base = dynamic(seed)

    base.name = "dynamic-rig"
    base.rig = lambda n: rig_views(n, RIG_CAMERAS)
    return base


def rig_views(n: int, k: int = RIG_CAMERAS) -> tuple[np.ndarray, np.ndarray]:
    """Views of the ``dynamic-rig`` stage with ``k`` fixed cameras: ``(c2w [n, 4, 4], times [n])``, view
    ``i`` = camera ``i % k`` at time step ``i // k`` of ``ceil(n / k)``, times evenly spread over [0, 1]."""
    steps = max(1, -(-n // k))
    cams = stage_rig(k)
    idx = np.arange(n)
    times = (idx // k) / max(steps - 1, 1)
    return cams[idx % k], times


# ---------------------------------------------------------------------------------- room --

ROOM_MIN = np.array([-3.0, -1.0, 0.0])
ROOM_MAX = np.array([3.0, 7.0, 3.0])
ROOM_EYE = np.array([0.0, 0.4, 1.5])
ROOM_FOCUS = np.array([0.0, 4.5, 1.0])


def room(seed: int = 0) -> Recipe:
    """Inside a textured room with furniture-like objects; LLFF-like forward-facing cameras."""
    rng = np.random.default_rng(seed)
    x0, y0, z0 = ROOM_MIN
    x1, y1, z1 = ROOM_MAX
    W, D, H = x1 - x0, y1 - y0, z1 - z0
    parts: list[Part] = []
    # Shell, normals pointing into the room.
    parts.append(Part("floor", 1, M.quad((x0, y0, z0), (W, 0, 0), (0, D, 0), 12, 16), _tex(rng, 1024, 1.5, 0.3)))
    parts.append(Part("ceiling", 3, M.quad((x0, y1, z1), (W, 0, 0), (0, -D, 0), 12, 16), _tex(rng, 512, 1.0, 0.3)))
    parts.append(Part("wall_back", 2, M.quad((x0, y1, z0), (W, 0, 0), (0, 0, H), 12, 6), _tex(rng, 1024, 1.5, 0.3)))
    parts.append(Part("wall_left", 2, M.quad((x0, y0, z0), (0, D, 0), (0, 0, H), 16, 6), _tex(rng, 1024, 1.5, 0.3)))
    parts.append(Part("wall_right", 2, M.quad((x1, y1, z0), (0, -D, 0), (0, 0, H), 16, 6), _tex(rng, 1024, 1.5, 0.3)))
    parts.append(Part("wall_front", 2, M.quad((x1, y0, z0), (-W, 0, 0), (0, 0, H), 12, 6), _tex(rng, 256, 1.0, 0.3)))
    # Furniture-like objects.
    parts.append(Part("table", 4, M.box((1.6, 0.9, 0.75), center=(-0.3, 4.2, 0.375)), _tex(rng, 1024)))
    parts.append(Part("globe", 5, M.uv_sphere(0.28, 96, 48, center=(-0.6, 4.2, 1.03)), _tex(rng, 512)))
    knot = M.torus_knot(3, 2, scale=0.11, tube_radius=0.05, center=(0.15, 4.1, 1.0))
    parts.append(Part("knot", 6, knot, _tex(rng, 512)))
    parts.append(Part("column", 7, M.frustum(0.35, 0.3, 2.2, n=64, center=(1.9, 5.2, 0.0)), _tex(rng, 1024)))
    crate = M.box((0.7, 0.7, 0.7), seg=6).transformed(M.rotation((0, 0, 1), 0.5))
    parts.append(Part("crate", 8, crate.transformed(M.translation((1.2, 2.8, 0.35))), _tex(rng, 512)))
    cone = M.frustum(0.3, 0.0, 0.9, n=64, center=(-1.9, 3.0, 0.0))
    parts.append(Part("cone", 9, cone, _tex(rng, 512)))
    ring = M.torus(0.35, 0.09, 96, 24).transformed(M.rotation((0, 1, 0), 0.4))
    parts.append(Part("ring", 10, ring.transformed(M.translation((-1.5, 5.6, 1.7))), _tex(rng, 512)))
    objects = {1: "floor", 2: "walls", 3: "ceiling", 4: "table", 5: "globe", 6: "knot", 7: "column",
               8: "crate", 9: "cone", 10: "ring"}

    def rig(n):
        r = np.random.default_rng([seed, 2])
        c2ws = []
        for i in range(n):  # sunflower pattern on a 1.2 x 0.7 m ellipse facing the back wall
            rad = np.sqrt((i + 0.5) / n)
            a = i * GOLDEN_ANGLE
            eye = ROOM_EYE + np.array([0.6 * rad * np.cos(a), r.uniform(-0.1, 0.1), 0.35 * rad * np.sin(a)])
            c2ws.append(look_at_c2w(eye, ROOM_FOCUS + r.normal(0, 0.12, 3)))
        return np.stack(c2ws), None

    def path(n):
        s = np.arange(n) / n
        c2ws = []
        for si in s:  # an ellipse walked twice with a slow push in and out
            a = 2 * np.pi * si
            eye = ROOM_EYE + np.array([0.55 * np.cos(2 * a), 0.4 * np.sin(a), 0.3 * np.sin(2 * a)])
            c2ws.append(look_at_c2w(eye, ROOM_FOCUS + np.array([0.3 * np.cos(a), 0.0, 0.0])))
        return np.stack(c2ws), None

    return Recipe(
        name="room", seed=seed, parts=parts, objects=objects,
        light=Light("point", (0.3, 3.0, 2.6)),
        background=None, fov_x=np.radians(60.0), rig=rig, path=path, kind="forward",
    )


RECIPES: dict[str, Callable[[int], Recipe]] = {"turntable": turntable, "room": room, "dynamic": dynamic,
                                              "dynamic-rig": dynamic_rig}
