"""Local transformers backend: a text LLM or a vision-language model loaded from a local path.

Device, dtype and batch size come from config. Requests are batched (left padding, one
``generate`` per batch of equal generation parameters); a lock serialises use of the model so the
async engine and the HTTP server can share one instance. Nothing is downloaded: the model
directory must hold config, weights and tokenizer/processor files.
"""
from __future__ import annotations

import asyncio
import base64
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcorpus.pipelines.llm.types import ChatRequest, Completion, GenParams, RunStats

__all__ = ["LocalBackendOptions", "LocalBackend", "decode_data_url", "image_data_url", "split_content",
           "is_vision_model"]


@dataclass(frozen=True)
class LocalBackendOptions:
    model_path: str = ""
    device: str = "auto"     # auto | cpu | cuda | cuda:N
    dtype: str = "auto"      # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    batch_size: int = 8
    attn_implementation: str | None = None  # e.g. sdpa, flash_attention_2
    model_name: str | None = None           # the name in provenance and /v1/models (default: folder name)


def image_data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def decode_data_url(url: str) -> bytes:
    if not url.startswith("data:"):
        raise ValueError("only data: URLs are accepted (no network fetches)")
    header, _, payload = url.partition(",")
    return base64.b64decode(payload) if ";base64" in header else payload.encode()


def split_content(content: Any) -> tuple[str, list[str]]:
    """OpenAI message content → (its text parts joined, its image data URLs in order).

    Only ``data:`` URLs pass: a backend must never fetch an image from the network."""
    if isinstance(content, str):
        return content, []
    texts, urls = [], []
    for part in content or []:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
            if not str(url).startswith("data:"):
                raise ValueError("only data: URLs are accepted (no network fetches)")
            urls.append(url)
    return "\n".join(texts), urls


def is_vision_model(path: str | Path) -> bool:
    """Whether the model folder holds a vision-language model (its config has a vision tower)."""
    from transformers import AutoConfig

    return hasattr(AutoConfig.from_pretrained(path, local_files_only=True), "vision_config")


class LocalBackend:
    name = "local"

    def __init__(self, options: LocalBackendOptions, stats: RunStats | None = None):
        import torch

        self.options = options
        self.stats = stats or RunStats()
        path = Path(options.model_path)
        self.model = options.model_name or path.name
        self.device = options.device if options.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = options.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype)
        self.vision = is_vision_model(path)
        kwargs: dict[str, Any] = {"dtype": self.dtype, "local_files_only": True}
        if options.attn_implementation:
            kwargs["attn_implementation"] = options.attn_implementation
        if self.vision:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            self.tokenizer = self.processor.tokenizer
            self.net = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.net = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.net.to(self.device).eval()
        self._lock = threading.Lock()

    # --- prompts ---------------------------------------------------------------------------------------
    def _prompt(self, messages: list[dict[str, Any]]) -> tuple[str, list[bytes]]:
        hf, images = [], []
        for msg in messages:
            text, urls = split_content(msg.get("content"))
            imgs = [decode_data_url(u) for u in urls]
            images += imgs
            if self.vision:
                parts = [{"type": "image"} for _ in imgs] + [{"type": "text", "text": text}]
                hf.append({"role": msg["role"], "content": parts})
            else:
                hf.append({"role": msg["role"], "content": text})
        templ = self.processor if self.vision else self.tokenizer
        if getattr(templ, "chat_template", None):
            return templ.apply_chat_template(hf, tokenize=False, add_generation_prompt=True), images
        image_token = getattr(self.processor, "image_token", "<image>") if self.vision else ""
        lines = []
        for msg in hf:
            content = msg["content"]
            if isinstance(content, list):
                content = "".join(image_token if p["type"] == "image" else p["text"] for p in content)
            lines.append(f"{msg['role']}: {content}")
        return "\n".join(lines) + "\nassistant:", images

    # --- generation ------------------------------------------------------------------------------------
    def _generate(self, prompts: list[str], images: list[list[bytes]], params: GenParams) -> list[Completion]:
        import torch
        from PIL import Image

        if self.vision and any(images):
            pil = [Image.open(io.BytesIO(b)).convert("RGB") for imgs in images for b in imgs]
            enc = self.processor(text=prompts, images=pil, padding=True, return_tensors="pt")
        else:
            enc = self.tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
        enc = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        gen: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if params.temperature > 0:
            gen.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.net.generate(**enc, **gen)
        n_in = enc["input_ids"].shape[1]
        mask = enc["attention_mask"]
        results = []
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        for i in range(len(prompts)):
            new = out[i, n_in:].tolist()
            finish = "stop" if eos in new else "length"
            if eos in new:
                new = new[:new.index(eos) + 1]
            while new and new[-1] == pad and pad != eos:
                new.pop()
            text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
            results.append(Completion(text, int(mask[i].sum()), len(new), finish))
        return results

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answers in request order; batches of ``batch_size`` requests with equal parameters."""
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[GenParams, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.params, []).append(i)
        bs = max(1, self.options.batch_size)
        with self._lock:
            for params, idx in groups.items():
                for b in range(0, len(idx), bs):
                    chunk = idx[b:b + bs]
                    prompts = [self._prompt(requests[i].messages) for i in chunk]
                    for i, c in zip(chunk, self._generate([p for p, _ in prompts], [im for _, im in prompts], params)):
                        out[i] = c
        self.stats.add_completions(out)  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    async def acomplete(self, requests: list[ChatRequest]) -> list[Completion]:
        return await asyncio.to_thread(self.complete, requests)
