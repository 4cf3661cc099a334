"""recon: a capture-to-asset pipeline for 3D capture and neural rendering."""

__version__ = "0.1.0"
