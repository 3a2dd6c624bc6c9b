"""Caption splitting on the gold prostate subcaptions and on each labelling style of issue 4."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medcorpus.transforms.subcaptions import split_caption

DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")) / "data"
PROSTATE = DATA / "compound/caption_splitting_prostate/prostate_data_only_annotated_captions.json"


def _gold() -> dict:
    if not PROSTATE.exists():
        pytest.skip(f"shared data missing: {PROSTATE}")
    return json.loads(PROSTATE.read_text())


def test_gold_label_sets_match_on_real_captions() -> None:
    gold = _gold()
    items = sorted(gold.items())
    exact = 0
    for _, item in items:
        want = {s["label"]["text"].lower() for s in item["gt_subfigures"]}
        exact += set(split_caption(item["caption"]).labels) == want
    assert exact / len(items) >= 0.90


@pytest.mark.parametrize("key", ["jcav04p0350g07.jpg", "nihms-448994-f0001.jpg", "srep12090-f4.jpg",
                                 "pone.0001792.g006.jpg", "6605569f1.jpg"])
def test_gold_examples_labels_and_text(key: str) -> None:
    item = _gold()[key]
    split = split_caption(item["caption"])
    assert split.labels == [s["label"]["text"].lower() for s in item["gt_subfigures"]]
    for sub in item["gt_subfigures"]:
        own = split.text_for(sub["label"]["text"].lower())
        # our text for the label shares most of its words with the gold subcaption
        words = {w.strip(".,;:()") for w in own.split()}
        gold_words = {w.strip(".,;:()") for w in sub["caption"].split()}
        assert len(words & gold_words) >= 0.6 * len(gold_words)


def test_shared_prefix_and_own_text() -> None:
    split = split_caption("Chest CT of a patient. (A) Axial view. (B) Coronal view.")
    assert split.shared == "Chest CT of a patient."
    assert split.labels == ["a", "b"]
    assert split.own("a") == "Axial view."
    assert split.text_for("b") == "Chest CT of a patient. Coronal view."


@pytest.mark.parametrize(
    "caption, labels",
    [
        ("MRI. (A) T1. (B) T2.", ["a", "b"]),
        ("MRI. A. T1 weighted. B. T2 weighted.", ["a", "b"]),
        ("MRI. A: T1 weighted; B: T2 weighted.", ["a", "b"]),
        ("MRI. a) T1 weighted b) T2 weighted", ["a", "b"]),
        ("Lesions (a-c) and controls (d).", ["a", "b", "c", "d"]),
        ("Lesions. (A and B) Biopsy. (C) Resection.", ["a", "b", "c"]),
        ("Lesions. a, b Biopsy. c–e Resection specimens.", ["a", "b", "c", "d", "e"]),
        ("Tissue. (A) one; (B1) two; (B2) three.", ["a", "b1", "b2"]),
        ("Tissue. (Ai) one; (Aii) two; (B) three.", ["ai", "aii", "b"]),
        ("Tissue. (A) one; (A') two; (B) three.", ["a", "a'", "b"]),
        ("Stained for LDLR (a); stained for SR-BI (b).", ["a", "b"]),
        ("Cells (i) before and (ii) after treatment (iii) recovery.", ["i", "ii", "iii"]),
        ("Knee MRI. Left: sagittal view. Right: coronal view.", ["left", "right"]),
        ("Sensitivity analysis. The left panel shows the odds ratio in SMA. The right panel shows it in CM.",
         ["left", "right"]),
        ("Control for retinal origin. Upper figure: uniform illumination. Lower figure: p values.", ["top", "bottom"]),
    ],
)
def test_label_styles(caption: str, labels: list[str]) -> None:
    assert split_caption(caption).labels == labels


def test_range_and_group_give_each_label_the_text() -> None:
    split = split_caption("Figure. (A-C) Biopsies of the lesion. (D and E) Controls.")
    assert [split.own(x) for x in "abc"] == ["Biopsies of the lesion."] * 3
    assert split.own("d") == split.own("e") == "Controls."


def test_stray_letters_are_not_labels() -> None:
    # "(N)" and "(Ca)" abbreviate tissues; they do not extend the A..D run
    split = split_caption("Tumour. A. Normal glands (N) and cancer (Ca). B. Metastasis. C. Node. D. Bone.")
    assert split.labels == ["a", "b", "c", "d"]


def test_no_labels_and_bad_input() -> None:
    for caption in ["", "   ", "A single chest radiograph.", "A", "(", "(B)", "(A) (N)"]:
        split = split_caption(caption)
        assert split.labels == []
        assert not split.is_compound
        assert split.text_for(None) == caption.strip()
    assert split_caption(None).labels == []  # type: ignore[arg-type]


def test_deterministic() -> None:
    caption = _gold()["srep05406-f3.jpg"]["caption"]
    assert split_caption(caption) == split_caption(caption)


@pytest.mark.parametrize("caption, labels", [
    # label style changes midway (PMC11341649)
    ("a FT-IR spectra of TiO2-FA, ZnPc and TiO2-FA-ZnPc samples, (b) chemical structures of folic acid (FA) "
     "and Zinc phtalocyanine (ZnPc)", ["a", "b"]),
    # the first label after an unpunctuated title (PMC11643049)
    ("Power during early navigation Power during early navigation a. Power for an example trial. b. Matrix "
     "showing the predicted correlation values. c. The correlation between early navigation and late.", ["a", "b", "c"]),
    # ... and with only "b." after it (PMC11643049)
    ("Raw power decodes navigation from the mental simulation condition a. When using the raw low-frequency "
     "power, the mean accuracy was greater. b. When using the standardized power, it was not.", ["a", "b"]),
    # but a letter after a word is not a label without the next one ("vitamin A. B cells ...")
    ("Serum vitamin A. B cells were counted in each sample.", []),
    # E1/E2/E3 are protein names, not nested labels of a panel E (PMC11643203)
    ("(A) Selection scores on the trimeric E2/E1 glycoproteins (p62/E1; PDB: 3N42), E3 selection from a side "
     "view. (B) Sites selected. (C) FRNT curves. (D) PRNT curve.", ["a", "b", "c", "d"]),
    # bracketed letters naming categories of one chart (pone.0038869)
    ("Relative share of each category. Blue: category (a), consensus. Red: category (b), multi-consensus. "
     "Yellow: Category (c), never-ending war.", []),
    # a range written with a tilde (elife-32671)
    ("Large scale photostimulation. (A~C) Simultaneous photostimulation of 40 cells. (D) Calcium response, "
     "corresponding to conditions shown in (A~C). (E) Number of target cells.", ["a", "b", "c", "d", "e"]),
    # "F & G" names two panels; a later "(B,D)"/"(C,E)" out of order, and "D&E" refers back (ppat.1000105)
    ("The GATA factor ELT-3. A Quantification of the fluorescent ratio. Fluorescence images in wt (B,D) or an "
     "elt-3 (C,E) background. The tail region is detailed in D&E. F & G elt-3 mutants are more susceptible "
     "(F, p<0.001), but do not have a different life span (G).", ["a", "b", "c", "d", "e", "f", "g"]),
    # the last label in the other case (PMC11462174)
    ("Treatment of melanoma. (A) Mice activity. (B) Appearance score. (C) Body weight. (D) Tumor volumes. "
     "(E) Tumor weight (f) Photograph showing melanoma B16 tumors.", ["a", "b", "c", "d", "e", "f"]),
    # panel A described by the title, unlabelled (PMC11634928)
    ("Expression difference analysis. Group comparison diagram of PMGs. (B–D) ROC curves of CCT6A (B), CPLX2 (C) "
     "and GLCCI1 (D) in the TCGA-LUAD dataset.", ["b", "c", "d"]),
    # postfix labels after "stage", and ", N stage" is no bare label N (PMC11634928)
    ("Clinical correlation. The stacked histogram results of clinical T stage (A), N stage (B), M stage (C), "
     "age (D) and sex (E) of the high/low risk score group.", ["a", "b", "c", "d", "e"]),
    # postfix (a), (b), then bare c, d, e; "a magnitude" and "Both d, e" are no new labels (PMC7417471)
    ("DSC (a) and TGA (b) curves of pure PS matrix. c TGA curves of PVA mats. d TGA curves of rGO. e TGA curves "
     "of PMMA nanofibers. As shown in e, the temperature increased to 441 °C, a magnitude higher. Both d, e are "
     "reproduced with permission.", ["a", "b", "c", "d", "e"]),
    # labels named by the word "Panel" or "Row" (prostate collection, PMC_test_7)
    ("Tissue recombinants demonstrate TGFbeta1-induced extracellular matrix deposition and inflammation.Panel A. "
     "Recombination of UGM plus NHPrE1.2 demonstrates a decrease in graft size. Panels B and C. Trichrome staining "
     "demonstrates increased collagen production. Panels D and E. An increase in F4/80 positive macrophages is "
     "apparent. Images B-E captured at *100.", ["a", "b", "c", "d", "e"]),
    ("Arrows point to blood vessels. Panel A shows specimens obtained from patients with breast cancer localized to "
     "pleura. Panels C and E show prostate cancer that metastased to lymph node (C) and to bone (E). No staining for "
     "FSHR is observed in blood vessels of normal tissues in pleura (B), lymph node (D), and bone (F).",
     ["a", "b", "c", "d", "e", "f"]),
    ("HEK293 cells were transfected with a specific vector as shown. Row A: cells were transfected with plasmid "
     "pRFPwt and showed strong GFP and RFP fluorescence. Row B: cells were transfected with pRFPm. No red "
     "fluorescence was observed. Row C: cells were transfected with pRFPm-O6meG.", ["a", "b", "c"]),
    # a bracketed label followed by a long stain and magnification note (prostate collection)
    ("Diffuse interstitial infiltration by prostatic adenocarcinoma (a, hematoxylin and eosin, original "
     "magnification, *40) and separate foci of clear cell renal carcinoma (b, hematoxylin and eosin, original "
     "magnification, *100). The adenocarcinoma was negative for CD10 (c, indirect immunoperoxidase) in contrast to "
     "the renal carcinoma (d, indirect immunoperoxidase)", ["a", "b", "c", "d"]),
    # "H&E" is a stain, not the labels H and E (prostate collection)
    ("Chronic overexpression of Pim1 results in LGPIN. A, H&E sections show normal-looking prostate glands in K67M "
     "grafts. Scale bars, 50 um. B, Immunohistochemistry for synaptophysin (SYN) shows strong expression. C, "
     "Proliferative (Ki67) and apoptotic indices. D, Western blot analyses for the indicated proteins.",
     ["a", "b", "c", "d"]),
    # a list of bare labels, one swallowed by an earlier false group ("Tb.N, c"), the last after ", and"
    ("Reconstruction analysis of bone tissue in different experimental groups. Morphometric indices: a BV/TV, "
     "b Tb.N, c Tb.Sp, and d Tb.Th were analyzed by micro-CT. **P < 0.01, *P < 0.05 vs. control group",
     ["a", "b", "c", "d"]),
    # a bracketed label with a colon note; first labels glued to the title's last word (prostate collection)
    ("The mass consisted of hypercellular atypical spindle-shaped cells (A: H&E, *400). The result of "
     "immunohistochemical staining was positive for progesterone receptor (B: immunohistochemical staining, *400).",
     ["a", "b"]),
    ("Intra-prostatic injection of ASEL induces autoimmunitya. Prostate weights of mice injected with PBS or ASEL "
     "(n=3). b-d. Histology of prostates after injection of PBS (b) or ASEL (c,d). e,f. Splenocytes were assayed "
     "for IFN-gamma (e) or IL-17 (f).", ["a", "b", "c", "d", "e", "f"]),
    ("HKa and D5 inhibit invasion of prostate cancer cells in a concentration-dependent mannerA, Cell invasion "
     "assay was performed as described in Materials and Methods. Bar is 1000 um in length.B, Quantification of "
     "prostate cancer cell migration.", ["a", "b"]),
    # a semicolon note in brackets, a label glued to its text, a dotted abbreviation (prostate collection)
    ("Solid sheets of squamous cells infiltrating the right lobe of the prostate (a; original magnification 10*) "
     "and the left lobe (b, c; original magnification 10* and 20*, respectively). Mytotic activity may also be "
     "observed (d; original magnification 40*).", ["a", "b", "c", "d"]),
    ("Fn14 expression in human prostate carcinoma. A)Prostate adenocarcinoma Gleason score 7 (3+4). B) Detail of "
     "adenocarcinoma cells from the same biopsy. C) Prostate adenocarcinoma Gleason score 6 (3+3).", ["a", "b", "c"]),
    ("Photomicrographs show strong AhR expression in basal cells (arrows in A) and proliferative inflammatory "
     "atrophy (B). C. Higher AhR expression is noted in malignant glands. D. Glands were scored using a 0-3 scale. "
     "Mean values +/-S.E.M. are shown.", ["a", "b", "c", "d"]),
])


def test_label_shapes_of_real_captions(caption, labels):
    assert split_caption(caption).labels == labels


def test_labels_that_open_sentences_win_over_the_same_labels_referred_to_in_brackets():
    """A real caption (PLOS Pathogens) writes each panel's labels at a sentence start and refers to
    them again in brackets; both styles name A-F, and the text belongs to the openers."""
    caption = ("Induction and regulation of nlp gene expression. A–C Quantification of the expression of the genes "
               "in the nlp-29 locus by qRT-PCR after 24 h of infection by D. coniospora (A), 2 h after needle "
               "wounding (B) and 6 h of osmotic stress in liquid (C). D–F Quantification with the Biosort of the "
               "normalized fluorescent ratio after 6 h in liquid culture in the presence of increasing concentrations "
               "of NaCl (D) and following a osmotic stress in 300 mM NaCl (E & F; see Materials and Methods).")
    split = split_caption(caption)
    assert split.labels == ["a", "b", "c", "d", "e", "f"]
    assert "Quantification with the Biosort" in split.text_for("e")


def test_a_category_word_does_not_hide_a_label_the_run_needs():
    """Real prostate-collection captions: "categories (f)" between (e) and (g) is panel f, and "wile
    type (A-C)" (wild type, misspelt) gives the run its A-C; a "type (a)" elsewhere stays a category."""
    tissues = ("The following tissue types are illustrated: (c) prostate cancer (CaP) Gleason grade 3, (d) CaP Gleason "
               "grade 4, and (e) CaP Gleason grade 5, normal tissue categories (f) benign epithelium and (g) benign "
               "stroma, and CaP confounders including (h) prostatic intraepithelial neoplasia (PIN) and (i) tissue "
               "atrophy. Shown are regions taken from the whole-slide images shown in (a) and (b).")
    assert split_caption(tissues).labels == list("abcdefghi")
    mice = ("Compound activation of SV40 large T-antigen and beta-Catenin causes prostate carcinoma with NED "
            "featuresH&E staining and immunostaining against Foxa2 and synaptophysin (Syn.) were performed on "
            "prostate specimens derived from wile type (A-C), LPB-Tag (D-F), D.A. beta-Catenin (G-I), and LPB-"
            "Tag/D.A. beta-Catenin (J-L) mice. Foxa2, which has been associated with neuroendocrine "
            "differentiation in prostate, was expressed in prostate derived from both D.A. beta-Catenin mouse (H)"
            " and LPB-Tag/D.A. beta-Catenin mouse (K), but was not expressed in prostate luminal epithelial cells"
            " derived from WT mouse (B), or from LPB-Tag mouse (E). Syn. was not expressed in prostate from wild "
            "type mouse (C) or from LPB-Tag mouse (F), hardly detected in prostate derived from D.A. beta-Catenin"
            " mouse (I), but was expressed in prostate tissue derived from LPB-Tag/D.A. beta-Catenin mouse (L). "
            "Arrows in panel J-L indicate cells undergoing NED (positive for Syn. and Foxa2, and show "
            "hyperchromatic nuclei, granular chromatin, and high nuclear/cytoplasmic ratio). Scale bar represents"
            " 50 um.")
    assert split_caption(mice).labels == list("abcdefghijkl")
    assert split_caption(mice.replace("wile", "wild")).labels == list("abcdefghijkl")
    assert split_caption("Cells of type (a) and (b) grow on chips; (c) a third kind.").labels == []


def test_labels_written_with_the_figures_own_number():
    """"1A: ... 1B: ..." and "1-A ... 1-B ..." (two real prostate-collection captions) name panels A and B;
    the number goes with its label, not into the text before it."""
    caption = ("Morphological changes in DLP of p27 deficient mice in the course of carcinogenesis. 1A: Dorso-lateral "
               "prostate of 6-month-old p27-/- mice. H&E staining * 200. 1B: High grade PIN in a p27-/- mice treated "
               "with MNU. H&E * 200. 1C: Ductal carcinoma of papillary type in DLP of a p27-/- animal.")
    split = split_caption(caption)
    assert split.labels == ["a", "b", "c"] and split.own("a").endswith("H&E staining * 200.")
    assert split_caption("1-A Needle biopsy of prostate carcinoma, HE stained. 1-B Needle biopsy, judged by "
                         "computer.").labels == ["a", "b"]
    assert split_caption("Tumor grade. 2A lesions were small. Grade 3B tumors were large.").labels == []


def test_hand_labelled_real_captions():
    """1595 real PMC captions labelled by reading (tests/data/subcaption_labels.jsonl; 480 of them
    with each panel's text): label sets match, and the subcaptions carry their panels' words."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from subcaption_eval import eval_labelled

    found = eval_labelled()
    exact = [x for (source, _), acc in found.items() if source != "roco" for x in acc["exact"]]
    roco = [x for (source, _), acc in found.items() if source == "roco" for x in acc["exact"]]
    f1 = [x for acc in found.values() for x in acc["f1"]]
    assert len(exact) + len(roco) == 1595 and len(f1) > 1500
    assert sum(exact) / len(exact) >= 0.93 and sum(f1) / len(f1) >= 0.85, found
    assert sum(roco) / len(roco) >= 0.8  # radiology captions: letters often key the parts of one image


def test_labels_after_their_text_lose_the_joining_and():
    """A real caption (PMC OA bulk): the text before "(C)" is "ALP staining", not "and ALP staining"."""
    split = split_caption("Proliferation (A), ALP activity (B) and ALP staining (C) of mBMSCs cultured with Si and Zn "
                          "dual-ion system (*p < 0.05, @p < 0.01, &p < 0.001).")
    assert [split.own(lab) for lab in "abc"] == ["Proliferation", "ALP activity", "ALP staining"]


def test_a_bracket_listing_labels_with_notes_names_each_label():
    """Real captions (prostate collection): "(A, *100; B, *200)" and "(A: H&E stain, *100, B: H&E
    stain, *400)" name two panels, each with its magnification; a bracket that only refers back to
    labels named before leaves their text whole."""
    split = split_caption("Histopathology of the prostatic needle biopsy at the time of initial examination. "
                          "Conventional prostate adenocarcinoma with tubular and cord-like structures, corresponding to "
                          "Gleason score 4 + 5 = 9, is seen in the specimen (A, *100; B, *200).")
    assert split.labels == ["a", "b"] and split.own("a") == "*100" and split.own("b") == "*200."
    split = split_caption("Granulomatous inflammation in the prostate showing central necrosis surrounded by numerous "
                          "granulomas, some of which contain giant cells in their centers. (A: H&E stain, *100, B: H&E "
                          "stain, *400)")
    assert split.labels == ["a", "b"] and split.own("b") == "H&E stain, *400"
    caption = ("Histology of a prostate biopsy specimen. (A) The tumor cells proliferated in solid nests between the "
               "normal prostate tissues. (B) Tumor cells display fine chromatin and small nucleoli. (C-E) On "
               "immunohistochemical staining, the tumor cells were positive for cytokeratin AE1/3, TTF-1, and N-CAM, "
               "respectively (C, cytokeratin AE1/3; D, TTF-1; E, N-CAM).")
    split = split_caption(caption)
    assert split.labels == list("abcde") and split.own("d") == split.own("c") and split.own("c").endswith("N-CAM).")
    assert split_caption("Reads of each base (A, T, G, C) were counted.").labels == []


def test_a_panel_text_loses_a_closing_bracket_opened_before_it():
    """Cutting inside a bracket leaves its closing one at the end of the last text; it goes, and a
    bracket the text opened itself stays."""
    split = split_caption("Prostate sections. (A) Normal gland (40 XHPF). (B) Tumour, *200 (original magnification).")
    assert split.own("a") == "Normal gland (40 XHPF)." and split.own("b") == "Tumour, *200 (original magnification)."
    split = split_caption("Ki67 (a: primary Ab, *400; b: primary Ab, *200).")
    assert split.own("b") == "primary Ab, *200."


def test_a_caption_naming_panel_a_alone():
    """Real captions (ROCO, PMC): a figure whose caption names only its panel "a" keeps that label;
    letters keying the parts of one image ("A: anterior tubercle; N: nerve root") and a lone "(A)"
    after the text it marks name no panel."""
    assert split_caption("Thoracic aortogram with supra-aortic vessels. (A) Complete SA occlusion.").labels == ["a"]
    assert split_caption("Cerebral MRI in an NMO patient. A. The axial 0.7-mm-thick T2-weighted image demonstrates "
                         "the optic neuritis as a T2 hyperintense involvement of the right optic tract.").labels == ["a"]
    assert split_caption("Transverse axial US image of the fifth cervical transverse process. The nerve root is "
                         "located between the tubercles. A: anterior tubercle; N: nerve root; P: posterior "
                         "tubercle.").labels == []
    assert split_caption("CT angiography of the coronary arteries shows the enlarged pulmonary artery (PA) effacing "
                         "the left main coronary artery (LMCA) as it leaves the aortic root (A).").labels == []
    split = split_caption("(A) Angiography of the left coronary artery. Optimal anastomosis of the LIMA to the LAD.")
    assert split.own("a").startswith("Angiography") and split.text_for("a").endswith("LAD.")
