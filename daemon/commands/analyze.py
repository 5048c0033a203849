"""``triaged analyze --file F``: run the configured analyzer on one file and print the
result, for tuning prompts, the taxonomy and the rules without ingesting anything.

::

    triaged analyze --file report.pdf [--media-type application/pdf] [--title T]

The file goes through the same extraction and normalization as the pipeline, then the
configured analyzer (``TRIAGED_ANALYZER``). Prints one JSON object: the analysis, the
accounting (provider, model, version, calls, tokens, latency) and what extraction found.
Needs no database. Exit status: 0 analysed; 1 the file could not be read, extracted or
analysed (one ``error:`` line on stderr); 2 bad arguments.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from daemon.modules.analysis import AnalysisRequest, build_analyzer
from daemon.modules.ingestion import extract_text, normalize
from daemon.shared.errors import DaemonError

if TYPE_CHECKING:
    import argparse

    from daemon.shared.db.pool import Pool


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    analyze = commands.add_parser(
        "analyze", help="run the configured analyzer on one file and print the result"
    )
    analyze.add_argument("--file", required=True, type=Path, help="the document")
    analyze.add_argument("--media-type", default=None, help="default: from the file name")
    analyze.add_argument("--title", default=None, help="default: the file name")
    analyze.set_defaults(handler=run, needs_database=False)


async def run(args: argparse.Namespace, pool: Pool | None) -> int:
    settings = args.settings
    path: Path = args.file
    try:
        size = (await trio.Path(path).stat()).st_size
        if size > settings.max_document_bytes:
            raise DaemonError(
                f"{path}: {size} bytes; the limit is {settings.max_document_bytes} "
                "(TRIAGED_MAX_DOCUMENT_BYTES)"
            )
        data = await trio.Path(path).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except DaemonError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    media_type = args.media_type or mimetypes.guess_type(path.name)[0]
    try:
        extracted = await trio.to_thread.run_sync(
            lambda: extract_text(data, media_type, filename=path.name)
        )
        normalized = await trio.to_thread.run_sync(
            lambda: normalize(
                extracted.text,
                chunk_chars=settings.analyzer_chunk_chars,
                max_chunks=settings.analyzer_max_chunks,
            )
        )
        analyzer = build_analyzer(args.components.analysis)
        try:
            outcome = await analyzer.analyze(
                AnalysisRequest(
                    title=args.title if args.title is not None else path.name,
                    chunks=list(normalized.chunks),
                    language=normalized.language,
                    truncated=normalized.truncated,
                )
            )
        finally:
            close = getattr(analyzer, "aclose", None)
            if close is not None:
                await close()
    except DaemonError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    result = {
        "analysis": outcome.analysis.model_dump(mode="json"),
        "accounting": {
            "provider": outcome.provider,
            "model": outcome.model,
            "version": outcome.version,
            "latency_ms": round(outcome.latency_ms, 2),
            "calls": outcome.calls,
            "repair_rounds": outcome.repair_rounds,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "chunked": outcome.chunked,
        },
        "extraction": {
            "media_type": extracted.media_type,
            "charset": extracted.charset,
            "pages": extracted.pages,
            "chars": normalized.chars,
            "language": normalized.language,
            "chunks": len(normalized.chunks),
            "truncated": normalized.truncated,
            "warnings": list(extracted.warnings),
        },
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
