"""Built-in procedural ground-truth scenes."""
