"""Training: numpy datasets (``difftool.train.data``) and the torch trainer (imported lazily)."""
