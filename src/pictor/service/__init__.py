"""Use cases: generate, edit, variation; the order of the steps around the model."""
