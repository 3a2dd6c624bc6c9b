"""Quality filters on real figures and crafted bad inputs; image-type tags; the CLIP hook."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageDraw
from testdata import ARTICLES, DATA

from medcorpus.transforms.image_types import LABELS, ClipZeroShot, ImageTypeOptions, tag_image
from medcorpus.transforms.quality import FilterOptions, assess

CHART = ARTICLES / "plosone-0178565" / "g004.png"
MEDICAT = DATA / "compound" / "medicat_sample"
CAPTION = "Kaplan-Meier curves of overall survival for patients treated with the new regimen versus control."


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_real_figure_is_kept_with_scores() -> None:
    d = assess(CHART.read_bytes(), CAPTION, "research-article")
    assert d.keep and d.dropped_by is None
    assert d.scores["min_side"] >= 64 and d.scores["gray_std"] > 4 and d.scores["language_prob"] > 0.9
    assert set(d.columns()) == {"quality_scores", "quality_dropped_by", "quality_reason"}


def test_blank_image_dropped_with_reason() -> None:
    blank = Image.new("RGB", (400, 300), (255, 255, 255))
    ImageDraw.Draw(blank).point((10, 10), fill=(250, 250, 250))
    d = assess(_png(blank), CAPTION)
    assert not d.keep and d.dropped_by == "low_information" and "std" in d.reason
    assert d.scores["gray_std"] < 1


def test_each_filter_drops_with_its_name() -> None:
    real = Image.open(CHART).convert("RGB")
    cases = {
        "image_decodable": (b"not an image", CAPTION, None),
        "min_side": (_png(real.resize((40, 30))), CAPTION, None),
        "max_aspect": (_png(real.resize((1000, 100))), CAPTION, None),
        "caption_length": (CHART.read_bytes(), "Fig 1", None),
        "caption_language": (CHART.read_bytes(), "Curvas de supervivencia global de los pacientes tratados con el "
                             "nuevo esquema frente al grupo control.", None),
        "article_type": (CHART.read_bytes(), CAPTION, "Retraction"),
    }
    for name, (image, caption, kind) in cases.items():
        d = assess(image, caption, kind)
        assert (d.keep, d.dropped_by) == (False, name), (name, d)
        assert d.reason


def test_disabled_filter_never_drops_and_options_from_config() -> None:
    opts = FilterOptions.from_dict({"enabled": ["image_decodable"], "min_side": 10})
    assert assess(CHART.read_bytes(), "Fig 1", "correction", opts).keep
    with pytest.raises(ValueError):
        FilterOptions.from_dict({"min_sidee": 3})


def _medicat() -> list[tuple[Image.Image, dict]]:
    rows = [json.loads(x) for x in (MEDICAT / "sample.jsonl").read_text().splitlines() if x.strip()]
    return [(Image.open(MEDICAT / "figures" / f"{r['pdf_hash']}_{r['fig_uri']}"), r) for r in rows]


def test_chart_and_radiograph_get_different_tags() -> None:
    radiology = [(im, r) for im, r in _medicat() if r["radiology"]]
    assert radiology
    for im, r in radiology:
        assert tag_image(im, r["s2_caption"]).label == "radiology"
        assert tag_image(im, "").label == "radiology"  # image statistics alone
    chart = tag_image(Image.open(CHART), CAPTION)
    assert chart.label == "chart" and 0 < chart.confidence <= 1
    assert tag_image(Image.open(CHART), "").label in ("chart", "diagram")


def test_endoscopy_from_caption() -> None:
    endo = [(im, r) for im, r in _medicat() if "endoscop" in r["s2_caption"].lower()]
    assert endo
    for im, r in endo:
        assert tag_image(im, r["s2_caption"]).label == "endoscopy"


def test_clip_hook_with_tiny_local_model(tmp_path) -> None:  # noqa: ANN001
    torch = pytest.importorskip("torch")
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    cfg = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "vocab_size": 1000, "max_position_embeddings": 77},
                     vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=8)
    CLIPModel(cfg).save_pretrained(tmp_path)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{c}</w>": i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")},
             **{c: i + 28 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    model = ClipZeroShot(str(tmp_path))
    im = Image.open(CHART)
    probs = model.scores(im)
    assert set(probs) == set(LABELS)
    assert abs(sum(probs.values()) - 1) < 1e-4 and len(probs) == 10
    tags = tag_image(im, CAPTION, ImageTypeOptions(model_weight=0.5), model=model)
    assert tags.label == "chart"  # a random model cannot outvote a clear caption at half weight
    assert abs(tags.scores["chart"] - (0.5 * tag_image(im, CAPTION).scores["chart"] + 0.5 * probs["chart"])) < 1e-6


def test_english_caption_citing_a_foreign_source_is_kept() -> None:
    """Real IJM caption (shared pmc/articles/ijm-00202, fig3): langid calls the whole text Spanish."""
    from medcorpus.transforms.quality import FilterOptions
    from medcorpus.transforms.quality_filters import FILTERS, Evidence

    def check_caption(caption: str, options: FilterOptions) -> bool:
        return FILTERS["caption_language"].filter(Evidence(caption, None, None), options).keep

    english = ("Per capita income of households by source. Source: Authors’ calculations based on Encuesta "
               "Continua de Hogares 2013, Instituto Nacional de Estadística.")
    spanish = ("Distribución de la población según edad y sexo en los hogares encuestados. "
               "Fuente: Encuesta Continua de Hogares 2013.")
    assert check_caption(english, FilterOptions())
    assert not check_caption(spanish, FilterOptions())


def test_langid_model_cache_gives_langids_own_identifier(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The unpacked model kept in the cache is langid's: the same arrays and the same answers, whether
    unpacked now or loaded from the cache by a later worker; a memo of it decides as it does."""
    from functools import lru_cache

    import numpy as np
    from langid.langid import LanguageIdentifier, model

    from medcorpus.transforms.quality_filters import FILTERS, Evidence, _identifier, identify_language

    monkeypatch.setenv("MEDCORPUS_CACHE", str(tmp_path))
    reference = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    texts = [CAPTION, "Distribución de la población según edad y sexo.", "Röntgenaufnahme des Thorax, seitlich."]
    for _ in ("unpacked", "cached"):
        _identifier.cache_clear()
        ident = _identifier()
        assert np.array_equal(ident.nb_ptc, reference.nb_ptc) and ident.tk_output == reference.tk_output
        assert [ident.classify(t) for t in texts] == [reference.classify(t) for t in texts]
        assert list(tmp_path.glob("langid-*.pkl"))
    _identifier.cache_clear()
    memo = lru_cache(maxsize=8)(identify_language)
    check = FILTERS["caption_language"].filter

    def judge_all() -> None:
        for text in texts:
            assert check(Evidence(text, None, None, memo), FilterOptions()) == check(Evidence(text, None, None),
                                                                                   FilterOptions())
    judge_all()
    identified = memo.cache_info().misses
    judge_all()
    assert memo.cache_info().misses == identified > 0  # the second pass identified nothing again
