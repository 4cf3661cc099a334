"""Viewers: viser operator UI and the WebXR page."""
