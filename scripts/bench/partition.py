"""Partitioned training vs one model with the same total steps.

    .venv/bin/python scripts/bench/partition.py street             # covered street, 96 views, 64 px, 2000 steps
    .venv/bin/python scripts/bench/partition.py room               # the synthetic room, 40 views, 64 px, 1200 steps
    .venv/bin/python scripts/bench/partition.py street --repeat 2  # A/B/A/B: single, partitioned, single, ...

``street`` is a long covered street (24 x 8 x 4 m: walls, floor and roof with distinct textures,
objects along it) walked by cameras that each look at a few metres of one side, so the views are
local to the blocks, as in the large captures partitioning is for. ``room`` is the worst case:
every camera sees every block.

Both runs start from the same points (the scene's, written beside a copy of its transforms.json
for the single run, since the synthetic scenes have depth maps but no SfM points) and train the
same total number of steps (the partitioned run: the coarse model's plus every block's): the single
run with every core (2 threads), the partitioned one as a coarse model on every core, then one block
per core on a local Ray cluster (1 thread each). The runs go back to back (``--repeat`` alternates
them), so they see the same load. Prints held-out PSNR, Gaussians, wall time, and whether every
merged Gaussian lies in its block's core.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STREET_LENGTH, STREET_WIDTH, STREET_HEIGHT = 24.0, 8.0, 4.0


def street(seed: int = 0):
    """A covered street along +y: floor, roof, two facades of four textured sections each, end
    walls, and objects along both sides; cameras walk the centre line, each looking at the facade
    a few metres to one side (or along the street at a slant)."""
    from recon.scene.conventions import look_at_c2w
    from scenes import meshes as M
    from scenes.recipes import Light, Part, Recipe, _tex

    rng = np.random.default_rng(seed)
    L, W, H = STREET_LENGTH, STREET_WIDTH, STREET_HEIGHT
    x0, x1 = -W / 2, W / 2
    parts = [
        Part("floor", 1, M.quad((x0, 0, 0), (W, 0, 0), (0, L, 0), 16, 48), _tex(rng, 1024, 1.0, 0.3)),
        Part("roof", 3, M.quad((x0, L, H), (W, 0, 0), (0, -L, 0), 16, 48), _tex(rng, 1024, 1.0, 0.3)),
        Part("end_near", 2, M.quad((x1, 0, 0), (-W, 0, 0), (0, 0, H), 16, 8), _tex(rng, 512, 1.5, 0.2)),
        Part("end_far", 2, M.quad((x0, L, 0), (W, 0, 0), (0, 0, H), 16, 8), _tex(rng, 512, 1.5, 0.2)),
    ]
    n_sec = 4
    for k in range(n_sec):
        y0, dy = k * L / n_sec, L / n_sec
        parts.append(Part(f"facade_left_{k}", 2, M.quad((x0, y0, 0), (0, dy, 0), (0, 0, H), 12, 8),
                          _tex(rng, 1024, 1.0, 0.2)))
        parts.append(Part(f"facade_right_{k}", 2, M.quad((x1, y0 + dy, 0), (0, -dy, 0), (0, 0, H), 12, 8),
                          _tex(rng, 1024, 1.0, 0.2)))
    objects = {1: "floor", 2: "facades", 3: "roof"}
    oid = 4
    layout = np.random.default_rng([seed, 1])
    for k, y in enumerate(np.arange(2.0, L - 1.0, 2.5)):
        side = -1 if k % 2 == 0 else 1
        x = side * (W / 2 - 1.0 - layout.uniform(0, 0.6))
        kind = k % 4
        if kind == 0:
            mesh = M.box((0.8, 0.8, 0.8), seg=4).transformed(M.rotation((0, 0, 1), layout.uniform(0, 1.5)))
            mesh = mesh.transformed(M.translation((x, y, 0.4)))
        elif kind == 1:
            mesh = M.uv_sphere(0.45, 48, 24, center=(x, y, 0.45))
        elif kind == 2:
            mesh = M.frustum(0.3, 0.25, 2.0, n=32, center=(x, y, 0.0))
        else:
            mesh = M.frustum(0.4, 0.0, 1.1, n=32, center=(x, y, 0.0))
        parts.append(Part(f"object_{k}", oid, mesh, _tex(rng, 512)))
        objects[oid] = f"object_{k}"
        oid += 1

    def rig(n):
        r = np.random.default_rng([seed, 2])
        c2ws = []
        for i in range(n):
            y = 1.0 + (L - 2.0) * (i + 0.5) / n
            eye = np.array([r.uniform(-0.8, 0.8), y, 1.4 + r.uniform(-0.2, 0.2)])
            side = -1 if i % 2 == 0 else 1
            target = np.array([side * W / 2, y + r.uniform(-2.0, 2.0), 1.3 + r.uniform(-0.4, 0.4)])
            c2ws.append(look_at_c2w(eye, target))
        return np.stack(c2ws), None

    def path(n):
        s = np.arange(n) / max(n - 1, 1)
        return np.stack([look_at_c2w(np.array([0.0, 1.0 + (L - 2) * t, 1.5]),
                                     np.array([np.sin(6 * t) * W / 2, 3.0 + (L - 2) * t, 1.3])) for t in s]), None

    light = Light("directional", (0.4, -0.3, 0.8), ambient=0.75, diffuse=0.35, shadows=False)
    return Recipe(name="street", seed=seed, parts=parts, objects=objects, light=light, background=None,
                  fov_x=np.radians(60.0), rig=rig, path=path, kind="forward")


def make_scene(name: str, out: Path, views: int, res: int) -> Path:
    """Render the bench scene ``name`` (``street`` is registered with the scene recipes for this process)."""
    from scenes import recipes
    from scenes.dataset import synth

    if name == "street":
        recipes.RECIPES.setdefault("street", street)
    return synth(name, out, views=views, res=res, seed=0)


def timed(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def single_scene(scene: Path, out: Path) -> None:
    """A copy of the scene's index with its points (those --partition uses) as sparse_pc.ply."""
    from recon.cluster.partition import Block, Plan, scene_points, write_block_scene
    from recon.run import EVAL_BACKGROUND
    from recon.scene.readers import load_scene

    sc = load_scene(scene, background=EVAL_BACKGROUND)
    inf = float("inf")
    everything = Block(0, 0, [-inf, inf, -inf, inf], [-inf, inf, -inf, inf], list(range(len(sc.frames))))
    write_block_scene(sc, Plan([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], []), everything, scene_points(sc), out)


def cores_ok(run: Path) -> tuple[bool, int]:
    from recon.cluster.partition import Plan, inside
    from recon.models.splats_io import read_ply

    plan = Plan.from_dict(json.loads((run / "partition.json").read_text())["plan"])
    uv = plan.ground(read_ply(run / "splats.ply")["means"].numpy())
    hits = np.stack([inside(uv, b.core) for b in plan.blocks]).sum(0)
    return bool((hits == 1).all()), int(len(uv))


DEFAULTS = {"street": (96, 64, 2000), "room": (40, 64, 1200)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", choices=sorted(DEFAULTS))
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--res", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--grid", default="2x2")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two runs this many times")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    views, res, steps = (v if v is not None else d for v, d in zip((args.views, args.res, args.steps),
                                                                    DEFAULTS[args.scene]))
    work = args.work or Path(tempfile.mkdtemp(prefix="recon-partition-"))
    work.mkdir(parents=True, exist_ok=True)
    recon = [sys.executable, "-m", "recon.cli"]
    scene = make_scene(args.scene, work / args.scene, views, res)
    points = work / f"{args.scene}_points"
    if not (points / "transforms.json").is_file():
        single_scene(scene, points)
    rows = []
    for rep in range(args.repeat):
        for name, cmd in (
            ("single model (2 threads)", recon + ["train", str(points), "--out", str(work / f"single{rep}"),
                                                  "--steps", str(steps)]),
            (f"partition {args.grid} (2 Ray workers)", recon + ["train", str(scene), "--out",
                                                                str(work / f"partitioned{rep}"), "--steps", str(steps),
                                                                "--partition", args.grid]),
        ):
            run = Path(cmd[cmd.index("--out") + 1])
            if run.exists():
                import shutil

                shutil.rmtree(run)
            wall = timed(cmd, work / f"{run.name}.log")
            m = json.loads((run / "metrics.json").read_text())
            rows.append((name, m["psnr"], m["ssim"], m["num_gaussians"], wall, "recon " + shlex.join(cmd[3:]),
                         m.get("partition")))
    print(f"\n{args.scene}, {views} views at {res}x{res}, {steps} steps in all\n")
    print("| run | held-out PSNR (dB) | SSIM | Gaussians | wall (s) |\n| --- | ---: | ---: | ---: | ---: |")
    for name, p, s, g, w, *_ in rows:
        print(f"| {name} | {p:.2f} | {s:.4f} | {g:,} | {w:.0f} |")
    for rep in range(args.repeat):
        a, b = rows[2 * rep], rows[2 * rep + 1]
        ok, n = cores_ok(work / f"partitioned{rep}")
        part = b[6]
        print(f"\npair {rep + 1}: PSNR difference (partition - single): {b[1] - a[1]:+.2f} dB; wall ratio "
              f"{b[4] / a[4]:.2f}; merged Gaussians each in exactly one block core: {ok} ({n:,}); "
              f"{part['coarse_steps']} coarse steps; blocks: views "
              f"{', '.join(str(x['views']) for x in part['blocks'])}, "
              f"steps {', '.join(str(x['steps']) for x in part['blocks'])}")
    print("\ncommands:")
    for r in rows[:2]:
        print("  " + r[5])
    print(f"\nproduced by: python {Path(__file__).relative_to(ROOT)} {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
