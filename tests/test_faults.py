"""The fault suite: what a user sees when something goes wrong, and that the next run repairs it.

Each case gives one clear line (what, where, a hint) and an exit code: 2 for the user's mistakes, 1
for failures; no traceback unless ``--debug``. Real articles from ../shared/data throughout; where an
input has to be broken on purpose (a megabyte caption, a re-encoded article) it is a real article
changed in one place, and the test says so.

Cases covered elsewhere, kept holding there:
  concurrent builds into one output ............ tests/test_output_lock.py
  kills at every phase, byte-identical resume .. tests/test_runners_faults.py, tests/test_archives_resume.py
  hostile archives (traversal, links, bombs) ... tests/test_archives_resume.py
  hostile images (bombs, truncated, CMYK ...) .. tests/test_images.py
  hostile XML (external entities, malformed) ... tests/test_jats.py
  completion record, verify, read-only query ... tests/test_verify_query.py
  transient fetch failures ..................... tests/test_fetch_retry.py
  an unbounded LLM request ..................... tests/test_llm_server_bounds.py
"""
from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import tree_bytes
from testdata import ARTICLES, BULK, REPO, copy_articles, fault_articles, release_dir, roco_captions
from typer.testing import CliRunner

from medcorpus.manifests import writers
from medcorpus.manifests.query import query
from medcorpus.pipelines.cli import app

ARTICLE_NAMES = ["elife-43154-v2", "elife-30274-v1", "plosone-0093988"]
SMALL = "stages: [fetch, parse, image]\n"
cli = CliRunner()


def _run(*args: str):  # noqa: ANN202
    return cli.invoke(app, [str(a) for a in args])


def _one_line(result, code: int, *words: str) -> None:  # noqa: ANN001
    """Exit ``code``, no traceback, the words in the message, a hint."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and not isinstance(result.exception, (AssertionError, TypeError)), out
    for w in words:
        assert w in out, (w, out)


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    return copy_articles(tmp_path / "in", ARTICLE_NAMES), cfg


# --- user errors -------------------------------------------------------------------------------------

def test_user_errors_are_one_line_a_hint_and_exit_2(tmp_path: Path, small) -> None:  # noqa: ANN001
    src, cfg = small
    out = tmp_path / "out"
    _one_line(_run("build", "--source", "local:/nonexistent", "--out", out), 2,
              "/nonexistent is not a directory", "hint:")
    _one_line(_run("build", "--source", "zip:/x", "--out", out), 2, "unknown source", "hint:")
    _one_line(_run("build", "--config", cfg, "--source", f"local:{src}", "--out", out, "--pmcids", "PMC999999999"),
              2, "none of the 1 ids is in the source", "hint:")
    (tmp_path / "notout").mkdir()
    _one_line(_run("query", tmp_path / "notout", "SELECT 1"), 2, "not a medcorpus build output")
    _one_line(_run("verify", tmp_path / "notout"), 2, "not a medcorpus build output")
    onto = tmp_path / "onto.yaml"
    onto.write_text("stages: [fetch, parse, image, concepts]\ndefaults:\n  concepts:\n    ontologies: [/nonexistent/onto]\n")
    _one_line(_run("build", "--config", onto, "--source", f"local:{src}", "--out", out), 2,
              "concepts.ontologies: no ontology file or folder at /nonexistent/onto", "hint:")
    for option, value in (("--workers", "-1"), ("--limit", "-5"), ("--runner", "foo"), ("--wait-timeout", "-3")):
        _one_line(_run("build", "--config", cfg, "--source", f"local:{src}", "--out", out, option, value), 2,
                  "Invalid value", "build --help' for help")
    # --debug shows where it came from
    debug = _run("--debug", "build", "--source", "local:/nonexistent", "--out", out)
    assert debug.exit_code != 0 and isinstance(debug.exception, FileNotFoundError)


def test_some_missing_pmcids_are_named(tmp_path: Path, small) -> None:  # noqa: ANN001
    src, cfg = small
    result = _run("build", "--config", cfg, "--source", f"local:{src}", "--out", tmp_path / "out", "--no-progress",
                  "--workers", "1", "--pmcids", "PMC999999999,elife-43154-v2")
    _one_line(result, 0, "1 of 2 ids are not in the source, skipped: PMC999999999")


@pytest.mark.parametrize("yaml_text, message", [
    ("defaults:\n  image:\n    jpeg_quality: '90'\n", "image.jpeg_quality: '90' is not valid: input should be a valid integer"),
    ("defaults:\n  shards:\n    max_bytes: -5\n", "shards.max_bytes: -5 is not valid: input should be greater than 0"),
    ("defaults:\n  image:\n    jpeg_quality: 500\n", "image.jpeg_quality: 500 is not valid"),
    ("defaults:\n  licenses:\n    comm: [CC-FOO]\n", "licenses.comm: 'CC-FOO' matches no license code"),
    ("defaults:\n  workers: four\n", "workers: 'four' is not valid"),
    ("defaults:\n  imgae: {}\n", "did you mean 'image'"),
])
def test_bad_config_values_are_refused_before_any_work(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "out"
    _one_line(_run("build", "--config", cfg, "--source", f"local:{ARTICLES}", "--out", out), 2, message)
    assert not out.exists()  # refused before the output was touched


def test_the_vocabulary_build_says_what_it_does_and_cleans_up_after_a_failure(tmp_path: Path, monkeypatch,
                                                                               caplog) -> None:  # noqa: ANN001
    """Building the vocabulary takes a minute: it says so first. A disk that fills up mid-build leaves
    no half-built vocabulary behind."""
    from medcorpus.pipelines import vocab

    def full(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(vocab, "build_vocab", full)
    with caplog.at_level(logging.INFO, logger="medcorpus.progress"), pytest.raises(OSError):
        vocab.cached_vocab([DATA_SYMP], ann=False, cache=tmp_path / "cache")
    assert "building the concept vocabulary from 1 ontology files" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []


DATA_SYMP = ARTICLES.parents[1] / "umls" / "open_vocab" / "symp" / "symp.obo"


# --- full disk ---------------------------------------------------------------------------------------

class _FillsUp(io.FileIO):
    """A file on a disk with ``room`` bytes left: a write past it fails with ENOSPC, as on a full disk."""

    room = 0

    def write(self, b) -> int:  # noqa: ANN001
        if self.tell() + len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(b)


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp" in p.name]


def test_a_full_disk_while_writing_shards_is_one_line_and_the_rerun_is_identical(tmp_path: Path, small,
                                                                                 monkeypatch) -> None:  # noqa: ANN001
    src, cfg = small
    args = ("build", "--config", cfg, "--source", f"local:{src}", "--no-progress", "--workers", "1")
    assert _run(*args, "--out", tmp_path / "ref").exit_code == 0
    out = tmp_path / "out"
    _FillsUp.room = 200_000
    monkeypatch.setattr(writers, "open", lambda path, mode="rb": _FillsUp(path, mode[0] + "b"), raising=False)
    full = _run(*args, "--out", out)
    _one_line(full, 1, f"disk full: no space left on device under {out}/releases/000001 while writing shards; about", "needed",
              "hint: free space")
    assert len(full.output.strip().splitlines()) <= 3, full.output
    assert not (out / "current.json").exists() and not _temp_files(out)
    _one_line(_run("query", out, "SELECT count(*) FROM samples"), 2, "query:")
    verify = _run("verify", out)  # 2: no manifest yet (the first shard failed); 1: an incomplete one
    assert verify.exit_code in (1, 2) and isinstance(verify.exception, (SystemExit, type(None))), verify.output
    assert "Traceback" not in verify.output and len(verify.output.strip().splitlines()) <= 3
    monkeypatch.undo()  # space freed
    assert _run(*args, "--out", out).exit_code == 0
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or not shutil.which("mount"),
                    reason="mounting a small tmpfs needs root")
def test_a_real_full_tmpfs_is_one_line_and_the_rerun_after_freeing_space_is_identical(tmp_path: Path,
                                                                                      small) -> None:  # noqa: ANN001
    src, cfg = small
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        # the full disk in a real process pool, as a user runs it: what reaches the terminal
        full = subprocess.run([sys.executable, "-m", "medcorpus.pipelines.cli", "build", "--config", str(cfg),
                               "--source", f"local:{src}", "--out", str(disk / "out"), "--no-progress",
                               "--workers", "2"], capture_output=True, text=True, timeout=300)
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr and len(full.stderr.strip().splitlines()) == 2, full.stderr
        assert re.match(rf"disk full: no space left on device under {disk}/out\S* while (staging units|writing)",
                        full.stderr), full.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        args = ("build", "--config", cfg, "--source", f"local:{src}", "--no-progress", "--workers", "1")
        assert _run(*args, "--out", disk / "out").exit_code == 0
        assert _run(*args, "--out", tmp_path / "ref").exit_code == 0
        assert tree_bytes(disk / "out") == tree_bytes(tmp_path / "ref")
        assert not _temp_files(disk / "out")
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_temporary_files_of_killed_writers_are_removed_by_the_next_build(tmp_path: Path, small) -> None:  # noqa: ANN001
    """A killed build leaves ``.NAME.PID-RANDOM.tmp`` files; the next build removes those whose
    process is gone, and never a live writer's."""
    src, cfg = small
    out = tmp_path / "out"
    args = ("build", "--config", cfg, "--source", f"local:{src}", "--out", out, "--no-progress", "--workers", "1")
    assert _run(*args).exit_code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    left = [release_dir(out) / "shards" / "other" / f".000000.tar.{dead}-0123abcd.tmp.tar",
            out / "_work" / "staging" / "ab" / f".ab12.meta.{dead}-0123abcd.tmp.meta"]
    live = release_dir(out) / "manifest" / f".articles.parquet.{os.getppid()}-89abcdef.tmp.parquet"
    for p in [*left, live]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    assert _run(*args).exit_code == 0
    assert not any(p.exists() for p in left) and live.exists()


def test_the_eval_set_registry_is_not_rewritten_by_every_build(tmp_path: Path) -> None:
    from medcorpus.manifests.evalsets import EvalEntry, write_registry

    path = tmp_path / "evalsets.jsonl"
    entries = [EvalEntry("roco", "caption", "a chest x-ray", "ROCO test")]
    write_registry(path, entries)
    before = path.stat()
    write_registry(path, entries)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# --- hostile text ------------------------------------------------------------------------------------

def _with_caption(src: Path, name: str, caption: str = "", mentions: int = 0) -> None:
    """Change one real article in one place: its first caption, or its citing paragraphs."""
    xml = next((src / name).glob("*.xml"))
    text = xml.read_text(encoding="utf-8")
    if caption:
        start = text.index("<caption>")
        text = text[:start] + f"<caption><p>{caption}</p></caption>" + text[text.index("</caption>", start) + 10:]
    if mentions:
        fig = re.search(r'<fig [^>]*id="([^"]+)"', text).group(1)
        cite = "".join(f'<p>See <xref ref-type="fig" rid="{fig}">Figure 1</xref> ({i}).</p>' for i in range(mentions))
        text = text.replace("</body>", cite + "</body>", 1)
    xml.write_text(text, encoding="utf-8")


def test_oversized_text_fields_have_their_own_reasons(tmp_path: Path) -> None:
    """A real article whose first caption is made a megabyte long, one cited 600 times: each is one
    error with a reason naming the limit, never a library's exception."""
    src = copy_articles(tmp_path / "in", ["elife-43154-v2", "elife-30274-v1"])
    _with_caption(src, "elife-43154-v2", caption="Axial CT of the chest. " * 45_000)
    _with_caption(src, "elife-30274-v1", mentions=600)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    assert _run("build", "--config", cfg, "--source", f"local:{src}", "--out", out, "--no-progress",
                "--workers", "1").exit_code == 0
    _, rows = query(str(out), "SELECT reason, detail, article_id FROM errors ORDER BY reason")
    reasons = {r[0]: r for r in rows}
    assert re.fullmatch(r"caption of 1,03\d,\d{3} characters \(limit 100,000\)", reasons["caption_too_long"][1])
    assert re.fullmatch(r"60\d citing paragraphs \(limit 500\)", reasons["too_many_mentions"][1])
    assert "exception" not in reasons and all(r[2] for r in rows)


def _declared(xml: str, encoding: str) -> str:
    return re.sub(r"^<\?xml[^>]*\?>", f'<?xml version="1.0" encoding="{encoding}"?>', xml)


@pytest.mark.parametrize("encoding, codec", [
    ("ISO-8859-1", "iso-8859-1"), ("windows-1252", "cp1252"), ("UTF-16", "utf-16"), ("UTF-16", "utf-16-le"),
])
def test_declared_encodings_are_honoured_with_named_entities(tmp_path: Path, encoding: str, codec: str) -> None:
    """A real article re-encoded (its first caption given a named entity and accented letters): the
    caption reads the same in the manifest and in the shard, whatever the encoding."""
    src = copy_articles(tmp_path / "in", ["elife-43154-v2"])
    xml = next((src / "elife-43154-v2").glob("*.xml"))
    text = xml.read_text(encoding="utf-8")
    at = text.index("<p>", text.index("<caption>")) + 3
    text = _declared(text[:at] + "Café &delta;-opioid &ndash; receptor, " + text[at:], encoding)
    xml.write_bytes(text.encode(codec, errors="xmlcharrefreplace"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    assert _run("build", "--config", cfg, "--source", f"local:{src}", "--out", out, "--no-progress",
                "--workers", "1").exit_code == 0
    _, rows = query(str(out), "SELECT caption, shard, txt_offset, txt_size FROM samples ORDER BY key LIMIT 1")
    caption, shard, offset, size = rows[0]
    assert "Café δ-opioid – receptor, G6PD" in caption, caption
    with open(release_dir(out) / shard, "rb") as f:
        f.seek(offset)
        assert f.read(size).decode("utf-8") == caption


def test_inline_formulas_read_as_text_not_latex() -> None:
    """PMC11322282 Fig. 8 (the real bulk archive): its formula is MathML and a LaTeX document."""
    from medcorpus.transforms.jats import parse_article

    with tarfile.open(next(BULK.glob("*.tar.gz"))) as tar:
        member = next(m for m in tar if m.name.endswith("PMC11322282.xml"))
        parsed = parse_article(tar.extractfile(member).read(), fallback_id="PMC11322282")
    captions = {f.label: f.caption for f in parsed.figures}
    assert "114.8 μg/mL) for 24" in captions["Fig. 8"]
    assert not any("documentclass" in c or "usepackage" in c for c in captions.values())


# --- errors table, summaries ---------------------------------------------------------------------------

def test_fetch_skips_name_their_article_and_a_reused_run_reports_no_work(tmp_path: Path) -> None:
    src = fault_articles(tmp_path / "in")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SMALL)
    args = ("build", "--config", cfg, "--source", f"local:{src}", "--out", tmp_path / "out", "--no-progress",
            "--workers", "1")
    first = _run(*args)
    assert first.exit_code == 0 and "stage seconds" in first.output
    _, rows = query(str(tmp_path / "out"), "SELECT stage, reason, article_id FROM errors WHERE stage = 'fetch'")
    assert rows == [("fetch", "xml_not_found", "broken-fetch")]
    # a column the table does not have is one line, not a traceback
    _one_line(_run("query", tmp_path / "out", "SELECT filter FROM dropped"), 2, "query:", '"filter" not found')
    again = _run(*args)
    assert again.exit_code == 0 and "(every unit reused)" in again.output and "stage seconds" not in again.output


# --- LLM failures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random text-only model (``pipelines/llm/random_models.py``), built once for this module."""
    from medcorpus.pipelines.llm.random_models import build_text_model

    return build_text_model(tmp_path_factory.mktemp("models") / "tiny", roco_captions(200))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llm_failures_are_recorded_fail_the_build_and_are_retried(tmp_path: Path, tiny_text_model: Path) -> None:
    """No server listening: every sample gets an ``llm_failed`` error naming the task and the server,
    the build exits 1. The server up (``serve-llm``'s app, a tiny random model, same URL): the next
    build sends the requests again and the errors are gone."""
    from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions
    from medcorpus.pipelines.llm.server import make_app, run_app_in_thread

    src = copy_articles(tmp_path / "in", ["elife-43154-v2"])
    port = _free_port()
    cfg = tmp_path / "llm.yaml"
    cfg.write_text("stages: [fetch, parse, image, llm]\ndefaults:\n  llm:\n    tasks: {clean: true, enrich: true}\n"
                   f"    backend: {{base_url: 'http://127.0.0.1:{port}/v1', model: tiny, max_retries: 0, timeout_s: 30}}\n"
                   "    generation: {max_new_tokens: 4}\n"
                   f"    cache: {{path: {tmp_path / 'llm.sqlite'}}}\n")
    args = ("build", "--config", cfg, "--source", f"local:{src}", "--out", tmp_path / "out", "--no-progress",
            "--workers", "1")
    down = _run(*args)
    _one_line(down, 1, "the llm stage failed for all", "llm requests failed for")
    _, rows = query(str(tmp_path / "out"), "SELECT input, reason, detail FROM errors")
    assert rows and all(r[1] == "llm_failed" and f"127.0.0.1:{port}" in r[2] and r[2].startswith("enrich: ")
                        for r in rows)
    backend = LocalBackend(LocalBackendOptions(str(tiny_text_model), device="cpu", batch_size=4))
    with run_app_in_thread(make_app(backend, batch_size=4, max_wait_ms=5), port=port):
        up = _run(*args)
    assert up.exit_code == 0, up.output
    assert re.search(r"llm: .*requests\s+[1-9]", up.output, re.S) and "llm_failed" not in up.output
    _, left = query(str(tmp_path / "out"), "SELECT count(*) FROM errors WHERE reason = 'llm_failed'")
    _, generated = query(str(tmp_path / "out"), "SELECT count(*) FROM samples WHERE len(generated) > 0")
    assert left == [(0,)] and generated[0][0] == len(rows)


def test_a_text_only_model_is_refused_for_recaption_and_the_profile_turns_the_stage_on(
        tmp_path: Path, tiny_text_model: Path) -> None:
    from medcorpus.pipelines.config import load_config

    assert load_config(REPO / "dataflow.yaml", "recaption").stages[-1] == "llm"
    model = tiny_text_model
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages: [fetch, parse, image, llm]\ndefaults:\n  llm:\n    tasks: {recaption: true}\n"
                   f"    backend: {{kind: local, model_path: {model}}}\n")
    _one_line(_run("build", "--config", cfg, "--source", f"local:{ARTICLES}", "--out", tmp_path / "out"), 2,
              "llm.backend.model_path", "is a text-only model")
