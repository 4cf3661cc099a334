"""Cameras, the Scene object, and readers/writers of scene formats."""

from recon.scene.cameras import Camera
from recon.scene.scene import Frame, Scene

__all__ = ["Camera", "Frame", "Scene"]
