"""Graphic href resolution and license parsing, on the naming schemes of the shared packages."""
from __future__ import annotations

import pytest
from testdata import ARTICLES

from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.schemas.records import SkipError
from medcorpus.transforms.jats import parse_article
from medcorpus.transforms.licenses import code_from_url, license_family, normalize_code, resolve_license
from medcorpus.transforms.resolve import resolve_graphic


def _package(name: str):  # noqa: ANN202
    source = LocalSource(str(ARTICLES))
    unit = next(u for u in source.list_units() if u.unit_id == name)
    return source.open(unit)


@pytest.mark.parametrize("folder,href,expected", [
    ("elife-19405", "elife-19405-fig1", "elife-19405-fig1.tif"),  # extension-less
    ("pone.0038869", "info:doi/10.1371/journal.pone.0038869.g002", "pone.0038869.g002.tif"),  # PLOS DOI
    ("plosone-0091296", "g001.png", "g001.png"),
    ("medrxiv-24301711-meca", "24301711v1_fig1.tif", "content/24301711v1_fig1.tif"),  # MECA content/
    ("elife-46793-v1", "fig2-figsupp1.jpg", "fig2-figsupp1.jpg"),
])
def test_resolution_on_real_packages(folder: str, href: str, expected: str) -> None:
    assert resolve_graphic(href, _package(folder).media_names) == expected


def test_unresolvable_is_an_error_not_a_guess() -> None:
    pkg = _package("scielo-bjmbr-2021e11439")
    fig = parse_article(pkg.xml, fallback_id="x").figures[0]
    assert fig.primary_graphic().href.endswith("gf001.jpg")  # the thumbnail rendition is not the figure
    with pytest.raises(SkipError) as exc:
        resolve_graphic(fig.primary_graphic().href, pkg.media_names)
    assert exc.value.reason == "image_not_found"
    with pytest.raises(SkipError) as exc:
        resolve_graphic("info:doi/10.1371/journal.pone.0038869.g007", _package("pone.0038869").media_names)
    assert exc.value.reason == "image_not_found"


def test_renditions_of_one_stem_pick_the_best_and_distinct_stems_are_ambiguous() -> None:
    assert resolve_graphic("fig1", ["fig1.gif", "fig1.jpg", "fig1.tif"]) == "fig1.jpg"
    with pytest.raises(SkipError) as exc:
        resolve_graphic("info:doi/10.1371/journal.pone.1234567.g001", ["g001.tif", "pone.1234567.g001.png"])
    assert exc.value.reason == "image_ambiguous"


def test_dar_and_meca_packages_find_their_article_xml() -> None:
    assert _package("elife-32671").media_names == [f"fig{i}.jpg" for i in range(1, 6)]
    meca = _package("medrxiv-24301711-meca")
    assert meca.media_names == ["content/24301711v1_fig1.tif"]
    assert b"<article" in meca.xml[:2000]


@pytest.mark.parametrize("raw,code", [
    ("cc-by-nc", "CC BY-NC"), ("CC BY-NC-ND 4.0", "CC BY-NC-ND"), ("CC0", "CC0"), ("cc_by", "CC BY"),
    ("CC BY-SA", "CC BY-SA"), ("public domain", "PD"), ("", None), ("all rights reserved", None),
])
def test_license_codes(raw: str, code: str | None) -> None:
    assert normalize_code(raw) == code


def test_license_urls_text_and_precedence() -> None:
    assert code_from_url("http://creativecommons.org/licenses/by-nc-nd/4.0/") == "CC BY-NC-ND"
    assert code_from_url("https://creativecommons.org/publicdomain/zero/1.0/") == "CC0"
    text = "distributed under the terms of the Creative Commons Attribution Non-Commercial License"
    assert resolve_license(None, None, text) == "CC BY-NC"
    # the source's metadata code is authoritative over what the XML says
    assert resolve_license("CC BY-NC", "http://creativecommons.org/licenses/by/4.0/", None) == "CC BY-NC"
    assert resolve_license(None, None, None) == "unknown"
    assert license_family("CC BY") == "comm" and license_family("CC BY-NC-SA") == "noncomm"
    assert license_family("unknown") == "other"
    assert license_family("CC BY-SA", {"comm": ["CC BY", "CC BY-SA"]}) == "comm"
