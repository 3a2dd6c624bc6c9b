"""CLI: ``medcorpus faithfulness`` (the pipeline's gate on JSON lines) and ``medcorpus serve-llm``.

The main CLI calls ``register(app)``; ``faithfulness_stream`` does the work without the CLI.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import typer

from medcorpus.pipelines.jsonl import map_json_lines

from medcorpus.transforms.faithfulness import FaithfulnessOptions, check

__all__ = ["register", "faithfulness_record", "faithfulness_stream"]


def faithfulness_record(record: dict[str, Any], options: FaithfulnessOptions | None = None) -> dict[str, Any]:
    """``{"id", "source", "generated"}`` → ``{"id", "score", "accepted", "unsupported"}``."""
    verdict = check(str(record.get("source") or ""), str(record.get("generated") or ""), options)
    return {"id": record.get("id"), **verdict.to_dict()}


def faithfulness_stream(lines: Iterable[str], options: FaithfulnessOptions | None = None) -> Iterator[dict[str, Any]]:
    """One output per non-blank line; a bad line yields ``{"id": null, "error": ...}``."""
    return map_json_lines(lines, lambda record: faithfulness_record(record, options))


def register(app: typer.Typer) -> None:
    @app.command()
    def faithfulness(
        threshold: Optional[float] = typer.Option(None, "--threshold", help="minimum score (default 0.75)"),
        config: Optional[Path] = typer.Option(None, "--config",
                                              help="dataflow.yaml: use its llm.faithfulness options"),
    ) -> None:
        """Check generated text against its sources: JSON lines {"id","source","generated"} on stdin →
        {"id","score","accepted","unsupported"} on stdout (the pipeline's gate)."""
        options = FaithfulnessOptions()
        if config:
            import yaml

            raw = (yaml.safe_load(config.read_text()) or {}).get("defaults", {}).get("llm", {}) or {}
            options = FaithfulnessOptions.from_dict(raw.get("faithfulness"))
        if threshold is not None:
            options = FaithfulnessOptions.from_dict({**options.__dict__, "threshold": threshold})
        for out in faithfulness_stream(sys.stdin, options):
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    @app.command("serve-llm")
    def serve_llm(
        model: Path = typer.Option(..., "--model", help="local model folder (transformers format)"),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16"),
        batch_size: int = typer.Option(8, "--batch-size"),
        max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", help="micro-batching window"),
        name: Optional[str] = typer.Option(None, "--name", help="model id served (default: folder name)"),
        max_tokens_cap: int = typer.Option(1024, "--max-tokens-cap", min=1,
                                           help="a request's max_tokens above this is clamped to it"),
        max_prompt_chars: int = typer.Option(32_000, "--max-prompt-chars", min=1,
                                             help="longer prompt text (all messages) is a 400"),
        max_concurrent: int = typer.Option(16, "--max-concurrent", min=1,
                                           help="requests in flight; more get 429 with Retry-After"),
    ) -> None:
        """Serve a local model as an OpenAI-compatible /v1/chat/completions endpoint.

        Stops within seconds on SIGTERM or SIGINT (exit code 0), cancelling running generations."""
        from medcorpus.pipelines.llm.local_backend import LocalBackend, LocalBackendOptions
        from medcorpus.pipelines.llm.server import ServerLimits, serve

        backend = LocalBackend(LocalBackendOptions(str(model), device, dtype, batch_size, model_name=name))
        typer.echo(f"serving {backend.model} on http://{host}:{port}/v1", err=True)
        limits = ServerLimits(max_tokens_cap=max_tokens_cap, max_prompt_chars=max_prompt_chars,
                              max_concurrent=max_concurrent)
        serve(backend, host=host, port=port, batch_size=batch_size, max_wait_ms=max_wait_ms, limits=limits)
