"""Test fixtures: synthetic Gaussian scenes (:mod:`recon.testing.gaussians`) and fake run folders
(:mod:`recon.testing.runs`). Used by tests/ and scripts/, never by the pipeline."""
