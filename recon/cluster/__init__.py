"""Scale-out on Ray: many captures in one command (:mod:`recon.cluster.batch`) and one large scene
trained as spatial blocks (:mod:`recon.cluster.partition`).

Ray is an optional extra (``pip install "recon[cluster]"``); nothing here imports it at module
level, so ``recon --help`` and the rest of recon work without it. :mod:`recon.cluster.ray_env`
starts (or joins, with an explicit address) the cluster with loopback-only listeners and usage
statistics off.
"""
