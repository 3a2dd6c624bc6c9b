"""open_clip's own training data path (``--dataset-type webdataset``) over a real build's shards:
brace expansion across two license families, no ``--train-num-samples`` (it reads ``sizes.json``),
default worker count, one batch through a tiny CLIP (its config here, no weights).

Runs in its own environment: ``tests/openclip_env.sh`` (open_clip needs torchvision; see there)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from loader_build import small_build

pytest.importorskip("open_clip_train", reason="runs in tests/openclip_env.sh")

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _declare_missing_torchvision_ops() -> None:
    """PyPI's torchvision is built for CUDA torch: beside the CPU torch its compiled ops do not load,
    and torchvision 0.28's import then fails registering fake kernels for ``nms``/``qnms``. Declaring
    those two op schemas lets its Python parts (transforms, FrozenBatchNorm2d) import; nothing here
    calls the ops."""
    import torch

    lib = Path(importlib.util.find_spec("torchvision").origin).parent / "_C.so"
    try:
        torch.ops.load_library(str(lib))
    except OSError:
        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def test_open_clip_trains_from_two_families_with_default_workers(tmp_path: Path) -> None:
    _declare_missing_torchvision_ops()
    import open_clip
    import torch
    from open_clip_train.data import get_data
    from open_clip_train.distributed import init_distributed_device
    from open_clip_train.params import parse_args

    out = small_build(tmp_path)
    sizes = json.loads((out / "current/shards/comm/sizes.json").read_text())  # the current release
    comm = sorted(n for n in sizes if n.startswith("comm-"))
    train_data = (f"{out}/current/shards/{{comm/comm-{{{comm[0][5:11]}..{comm[-1][5:11]}}},other/other-000000}}.tar")
    config = tmp_path / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    args = parse_args(["--train-data", train_data, "--dataset-type", "webdataset", "--batch-size", "8",
                       "--model", "tiny-clip", "--seed", "0"])
    assert args.workers == 4 and args.train_num_samples is None  # open_clip's defaults
    init_distributed_device(args)
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms("tiny-clip", pretrained=None)
    data = get_data(args, (preprocess_train, preprocess_val), epoch=0, tokenizer=open_clip.get_tokenizer("tiny-clip"))
    loader = data["train"].dataloader
    total = sum(sizes.values())
    assert loader.num_batches == math.ceil(math.ceil(total / 8) / 4) * 4  # the epoch length from sizes.json
    images, texts = next(iter(loader))
    assert images.shape == (8, 3, 64, 64) and texts.shape == (8, 32)
    with torch.no_grad():
        image_features, text_features, _ = model(images, texts)
    assert image_features.shape == text_features.shape == (8, 32)
