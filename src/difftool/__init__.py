"""difftool: small diffusion models from notebook to fast, shippable sprites."""

__version__ = "0.1.0"
