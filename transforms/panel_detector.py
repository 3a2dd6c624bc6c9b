"""Optional learned panel detector, used instead of the layout analysis when a model is configured.

Contract (both back ends): the model takes one float32 tensor ``[1, 3, H, W]`` (RGB scaled to
0..1, the figure at its own size) and returns a tensor ``[N, 5]`` of rows ``x1, y1, x2, y2, score``
in pixels of that input. Rows under ``min_score`` are dropped. The output has the same box format
as :func:`medcorpus.transforms.panels.analyze_layout`, so the rest of the stage does not care where
boxes came from. ``.onnx`` files run with onnxruntime, anything else loads with
``torch.jit.load``; both are imported only when a model is configured.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .panels import Box

__all__ = ["LearnedPanelDetector"]


class LearnedPanelDetector:
    """Loads a TorchScript or ONNX model once; call it with a PIL image to get scored boxes."""

    def __init__(self, path: str | Path, min_score: float = 0.5) -> None:
        self.path = Path(path)
        self.min_score = min_score
        self._run = self._load_onnx() if self.path.suffix == ".onnx" else self._load_torchscript()

    def _load_onnx(self) -> Any:
        import onnxruntime as ort  # optional dependency

        sess = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: np.asarray(sess.run(None, {name: x})[0])

    def _load_torchscript(self) -> Any:
        import torch  # optional dependency

        model = torch.jit.load(str(self.path), map_location="cpu").eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).cpu().numpy()

        return run

    def __call__(self, image: Image.Image) -> list[tuple[Box, float]]:
        arr = np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
        rows = np.asarray(self._run(np.ascontiguousarray(arr)), dtype=np.float64).reshape(-1, 5)
        w, h = image.size
        out: list[tuple[Box, float]] = []
        for x1, y1, x2, y2, score in rows:
            if score < self.min_score:
                continue
            box = (int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2)))
            if box[2] > box[0] and box[3] > box[1]:
                out.append((box, float(score)))
        return out
