"""Asset exporters: pure functions from a trained model to files.

One module per format or concept (see docs/export.md):

* :mod:`exporters.ply` — Inria 3DGS PLY (``write_ply``, ``read_ply``)
* :mod:`exporters.spz` — Niantic SPZ v3 (``write_spz``, ``read_spz``)
* :mod:`exporters.splat` — antimatter15 ``.splat`` (``write_splat``, ``read_splat``)
* :mod:`exporters.gltf_splat` — glTF ``KHR_gaussian_splatting`` GLB (``write_glb``, ``validate_gltf``)
* :mod:`exporters.usd_splat` — OpenUSD ``ParticleField3DGaussianSplat`` (``write_usd``, ``validate_usd``)
* :mod:`exporters.cameras` — ``cameras.json`` and USD cameras, camera paths
* :mod:`exporters.splats`, :mod:`exporters.axes` — filtering and axis/unit conversions
* :mod:`exporters.export`, :mod:`exporters.cli` — the ``recon export`` pipeline and command
* :mod:`exporters.run`, :mod:`exporters.provenance` — reading a run folder, provenance fields
* :mod:`exporters.jstools` — Node reference tools for tests (glTF-Validator, Niantic's SPZ library)

Writers take recon's Gaussians (dict of tensors or arrays with gsplat's names and
parameterisation) and store them as given; the pipeline converts axes first.
"""
