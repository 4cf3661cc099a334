"""What ``recon export`` does with a NeRF run (called from :func:`exporters.export.export_run`).

=============  ==================================================================================
formats        source
=============  ==================================================================================
``mesh-*``     marching tetrahedra of the NeRF's density, texture baked from NeRF renders
               (:mod:`exporters.nerf_mesh`), written by the splat meshes' writers
``points``     points on the NeRF's surface with colours and normals, ``points.ply``
splat formats  splats distilled from the NeRF (:mod:`exporters.nerf_distill`, cached in
               ``RUN/distill``), then written exactly as a splat run's; the provenance of every
               file says ``distilled_from: nerf``
``cameras``    the run's cameras, as for any run
=============  ==================================================================================
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SPLAT_FORMATS = ("ply", "spz", "splat", "splat-glb", "splat-usd")
POINTS_COUNT = 200_000
"""Rays cast for the ``points`` format (rays that stay mostly transparent give no point)."""


def empty_splats() -> dict[str, np.ndarray]:
    """A splat dict with no Gaussians (the placeholder of a NeRF run before distillation)."""
    z = np.zeros
    return {"means": z((0, 3), np.float32), "quats": z((0, 4), np.float32), "scales": z((0, 3), np.float32),
            "opacities": z((0,), np.float32), "sh0": z((0, 1, 3), np.float32), "shN": z((0, 0, 3), np.float32)}


class NerfSources:
    """The NeRF of a loaded run (:class:`exporters.run.Run` with ``method == "nerf"``) as the source
    of meshes, point clouds and distilled splats."""

    def __init__(self, run, log: Callable[[str], None] = lambda s: None):
        from exporters.nerf_mesh import load_field

        self.run = run
        self.log = log
        self.field = load_field(run.root)
        self.cameras = [c.camera for c in run.cameras]

    def train_cameras(self):
        from recon.run import RunFolder

        cams = [c for c in RunFolder.open(self.run.root).cameras()]
        train = [c.camera for c in cams if c.split == "train"]
        return train or [c.camera for c in cams]

    def mesh(self, options, crop_min=None, crop_max=None):
        from exporters.nerf_mesh import extract_nerf_mesh
        from recon.methods.nerf import NerfRenderer
        from recon.run import RunFolder

        rf = RunFolder.open(self.run.root)
        renderer = NerfRenderer(self.field, float(rf.render_settings.get("t_stop", 1e-3)))
        downscale = float(rf.render_settings.get("downscale", 1.0) or 1.0)
        from exporters.mesh import scaled_camera

        cams = [scaled_camera(c, int(round(max(c.width, c.height) / downscale))) for c in self.train_cameras()]
        return extract_nerf_mesh(self.field, cams, options, crop_min, crop_max, log=self.log, renderer=renderer)

    def points(self, crop_min=None, crop_max=None):
        from exporters.nerf_mesh import surface_point_cloud

        p, n, c = surface_point_cloud(self.field, self.train_cameras(), POINTS_COUNT, crop_min, crop_max)
        self.log(f"points: {len(p):,} points on the NeRF's surface (transmittance 0.5 along {POINTS_COUNT:,} training rays)")
        return p, n, c

    def distilled_run(self, options):
        """A copy of the run whose splats are the distilled ones and whose provenance says so."""
        import dataclasses

        from exporters.nerf_distill import distilled_splats, provenance_fields
        from exporters.splats import as_numpy

        g, rec = distilled_splats(self.run.root, options, log=self.log)
        prov = self.run.provenance.with_extra(**provenance_fields(rec))
        return dataclasses.replace(self.run, splats=as_numpy(g), provenance=prov)
