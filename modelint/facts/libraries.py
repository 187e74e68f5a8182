"""Top-level modules a project does not define: the standard library and the third-party
libraries training code imports most. A reference into one of them names no function or class
of the project, so the index is never asked about it and no summary is looked for."""

from __future__ import annotations

import sys

STANDARD_LIBRARY = frozenset(sys.stdlib_module_names)

# What a training script imports besides torch that is certainly not one of its own files
# (`np` too: some files spell the alias in a dotted reference they build from strings).
NOT_PROJECT = STANDARD_LIBRARY | {
    "torch", "torchvision", "numpy", "np", "scipy", "pandas", "sklearn", "matplotlib", "cv2", "PIL", "tqdm",
    "transformers", "yaml", "wandb", "tensorboardX", "h5py", "requests", "einops", "seaborn", "networkx",
    "tensorflow", "jax", "datasets"}


def is_not_project(reference: str) -> bool:
    """Whether a qualified reference (`numpy.linalg.norm`, `os.path.join`) points outside the project."""
    return not reference.startswith(".") and reference.split(".", 1)[0] in NOT_PROJECT
