"""Dataset loaders behind :func:`difftool.train.data.load_dataset` (numpy only, no torch)."""
