"""GPU benchmark of the VLM re-captioning stage (issue 7, part 6): captions/s and generated tokens/s.

A ~2 B-parameter LLaVA (CLIP-L/14-336 vision tower + 22-layer 2048-wide Llama decoder) is built
from a config with random weights (no download), served by the local backend exactly as the stage
uses it, over a batch-size sweep. Every request generates exactly ``--new-tokens`` tokens (EOS is
suppressed) so throughput is comparable across batch sizes. Real captions and figures come from
../shared/data. Never run in CI.

    python bench/recaption_gpu_bench.py                     # GPU, 2b model, batch sizes 1..32
    python bench/recaption_gpu_bench.py --cpu-smoke         # tiny model on CPU: checks the script works
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on CPU, small sweep")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,2,4,8,16,32; smoke: 1,2,4)")
    ap.add_argument("--new-tokens", type=int, default=None, help="generated tokens per caption (default 64; smoke 8)")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per batch size (after one warm-up)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import torch

    from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions, image_data_url
    from medcorpus.pipelines.llm.random_models import build_vlm
    from medcorpus.pipelines.llm.types import ChatRequest, GenParams
    from medcorpus.transforms.caption_clean import clean_caption
    from medcorpus.transforms.llm_tasks import RECAPTION

    smoke = args.cpu_smoke
    size, device = ("tiny", "cpu") if smoke else ("2b", "cuda")
    if not smoke and not torch.cuda.is_available():
        sys.exit("no GPU: use --cpu-smoke to check the script")
    sizes = [int(x) for x in (args.batch_sizes or ("1,2,4" if smoke else "1,2,4,8,16,32")).split(",")]
    new_tokens = args.new_tokens or (8 if smoke else 64)
    roco = (DATA / "evalsets" / "roco_test" / "radiology" / "captions.txt").read_text().splitlines()[:3000]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        path = build_vlm(Path(tmp) / f"llava-{size}", [x.split("\t", 1)[1] for x in roco], size=size,
                         dtype=None if smoke else args.dtype)
        backend = LocalBackend(LocalBackendOptions(str(path), device=device,
                                                   dtype="float32" if smoke else args.dtype,
                                                   batch_size=max(sizes), attn_implementation=None if smoke else args.attn))
        n_params = sum(p.numel() for p in backend.net.parameters())
        print(f"model: llava-{size}, {n_params / 1e9:.2f} B parameters, built+loaded in {time.time() - t0:.0f}s, "
              f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'})", flush=True)
        backend.net.generation_config.eos_token_id = None  # always generate new_tokens tokens
        params = GenParams(max_new_tokens=new_tokens)
        inputs = _inputs(max(sizes) * (args.batches + 1))
        rows = []
        for bs in sizes:
            backend.options = LocalBackendOptions(str(path), device, backend.options.dtype, bs)
            reqs = [ChatRequest(RECAPTION.messages({"caption": clean_caption(c), "context": ""}, image_data_url(img)),
                                params) for c, img in inputs[: bs * (args.batches + 1)]]
            backend.complete(reqs[:bs])  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            out = backend.complete(reqs[bs:])
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            toks = sum(o.completion_tokens for o in out)
            row = {"batch_size": bs, "captions": len(out), "seconds": round(dt, 3),
                   "captions_per_s": round(len(out) / dt, 2), "generated_tokens_per_s": round(toks / dt, 1),
                   "prompt_tokens_mean": round(sum(o.prompt_tokens for o in out) / len(out), 1),
                   "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
        print("\n| batch | captions/s | gen tokens/s | prompt tokens | peak GiB |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['batch_size']} | {r['captions_per_s']} | {r['generated_tokens_per_s']} | "
                  f"{r['prompt_tokens_mean']} | {r['peak_mem_gib']} |")
        if args.json:
            args.json.write_text(json.dumps({"model": f"llava-{size}", "params": n_params, "new_tokens": new_tokens,
                                             "results": rows}, indent=1))


if __name__ == "__main__":
    main()
