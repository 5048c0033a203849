"""CPU per document of normalization and the heuristic analysis (no database, no HTTP).

The worker's largest costs in ``bench/ingest.py``. Runs both over the same 300 documents
that benchmark posts (1-5 KB of triage words), in this process, with the default
settings; prints the median of ``--runs`` passes (default 5) and every pass, as
microseconds per document (the machine is noisy: the median, like the other benchmarks'
figures, is not flattered by one lucky pass; the passes show the spread). No target of
its own: it explains the ingestion throughput.

    .venv/bin/python bench/analysis.py
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

# bench/ holds queue.py: the script's directory must not shadow the standard library's
# ``queue`` (which trio imports); the project root must be importable instead.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))

from daemon.composition import compose  # noqa: E402
from daemon.modules.analysis import AnalysisRequest, AnalyzerSet  # noqa: E402
from daemon.modules.analysis.heuristic import heuristic_analysis  # noqa: E402
from daemon.modules.ingestion.normalize import normalize  # noqa: E402
from daemon.shared.config import Settings  # noqa: E402

DOCUMENTS = 300


def _document_text():
    spec = importlib.util.spec_from_file_location("bench_ingest", _HERE / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.document_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="passes over the documents")
    args = parser.parse_args()
    document_text = _document_text()
    rng = random.Random(1)
    texts = [document_text(rng) for _ in range(DOCUMENTS)]
    settings = Settings()
    analyzer = AnalyzerSet(compose(settings).analysis).default
    budget = {
        "chunk_chars": settings.analyzer_chunk_chars,
        "max_chunks": settings.analyzer_max_chunks,
    }
    normalized = [normalize(text, **budget) for text in texts]
    requests = [
        AnalysisRequest(title="bench", chunks=list(n.chunks), language=n.language)
        for n in normalized
    ]

    def normalization() -> None:
        for text in texts:
            normalize(text, **budget)

    def analysis() -> None:
        for request in requests:
            heuristic_analysis(request, taxonomy=analyzer.taxonomy, rules=analyzer.rules)

    print(f"{DOCUMENTS} documents of 1-5 KB; median of {args.runs} passes, and each pass")
    print(f"| work | µs per document, median of {args.runs} | passes, µs per document |")
    print("|---|---|---|")
    for name, work in (("normalization", normalization), ("heuristic analysis", analysis)):
        passes = [_timed(work) / DOCUMENTS * 1e6 for _ in range(args.runs)]
        each = ", ".join(f"{p:,.0f}" for p in passes)
        print(f"| {name} | {statistics.median(passes):,.0f} | {each} |")


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
