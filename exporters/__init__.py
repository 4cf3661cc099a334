"""Asset exporters: pure functions from a trained model to files."""
