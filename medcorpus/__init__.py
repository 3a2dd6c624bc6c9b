"""medcorpus: medical image-text corpora for GPU pretraining.

The architecture's folders (transforms/, pipelines/, schemas/, manifests/) sit at the repository
root and install as ``medcorpus.<folder>``. Running from a checkout (a worktree, CI before install)
the parent folder is added to this package's path so the same imports resolve there too.
"""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isdir(_os.path.join(_root, "transforms")) and _root not in __path__:
    __path__.append(_root)
