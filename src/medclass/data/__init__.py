"""Data: sources, splits, the decode-once cache and tensor loaders."""
