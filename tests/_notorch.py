"""Run the difftool CLI with torch made unimportable: ``python tests/_notorch.py ARGS...``."""

import importlib.abc
import sys


class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None


sys.meta_path.insert(0, _BlockTorch())
for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
    del sys.modules[mod]

from difftool.cli import main  # noqa: E402

sys.argv = ["difftool", *sys.argv[1:]]
try:
    main()
finally:
    assert "torch" not in sys.modules, "torch was imported"
