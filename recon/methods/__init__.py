"""Trainable methods behind one interface (:mod:`recon.methods.base`) and their registry."""

from recon.methods.base import (  # noqa: F401
    Batch,
    Method,
    Renderer,
    RenderOutput,
    available_methods,
    get_method,
    register_method,
    unregister_method,
)
