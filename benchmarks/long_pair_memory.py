"""Peak memory (and time) of scoring ONE 8,192-token (query, passage) pair with a ModernBERT reranker on CPU.

ModernBERT rerankers (japanese-reranker-*-v2, ruri-v3-reranker-310m) accept 8,192 tokens. One such pair is four
times the CPU token budget (``jp_rerank.rerank.plans.CPU_TOKEN_BUDGET``, 2,048 tokens per forward pass), so the
engine scores it alone, in a batch of one; this script measures what that one forward pass costs.

Model: the same-shape random-weight model of ``--shape`` (default ``base-v2``: 19 layers x 512, the largest v2
reranker; built once with :mod:`jp_rerank.testing` into ``--models-dir``), or ``--model`` (any cross-encoder
folder). Memory does not depend on the weights' values. The passage is Japanese text (JSQuAD passages when the data
folder is there, else the bundled demo texts) repeated past the limit, so truncation makes the pair exactly
``max_length`` tokens.

Each method runs in its own child process: load the model, warm it up on a short pair, read the resident memory
(RSS), reset the peak (``/proc/self/clear_refs``), score the long pair once (timed), read the peak (``VmHWM``).
Reported: the peak above the loaded-and-warm RSS ("extra peak"), the absolute peak, and the seconds. Methods: our
``Reranker`` in torch fp32 and bf16 autocast (bf16 only on CPUs with native bf16), and sentence-transformers
``CrossEncoder.predict`` (fp32, the card's way) on the same pair.

Usage:
    python benchmarks/long_pair_memory.py [--shape base-v2] [--tokens 8192] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from _paths import RESULTS, data_dir

if TYPE_CHECKING:
    from jp_rerank.rerank.plans import PrecisionOption

QUERY = "富士山の高さは何メートルですか？"


def _status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # VmHWM := current RSS


def _passage(tokenizer: Any, tokens: int) -> str:
    folder = data_dir()
    if folder is not None:
        with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line, _ in zip(fh, range(200), strict=False)]
    else:
        from jp_rerank.data import demo_texts

        texts = list(demo_texts())
    text = "".join(texts)
    while len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) < tokens + 64:
        text += text
    return text


def child(method: str, model: str, tokens: int) -> dict[str, Any]:
    """Run one method in this process and return its measurements."""
    import torch

    torch.set_num_threads(int(os.environ.get("JP_RERANK_BENCH_THREADS", torch.get_num_threads())))
    if method == "st-predict":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model, device="cpu", max_length=tokens)
        tokenizer = ce.tokenizer

        def score(docs: list[str]) -> Any:
            return ce.predict([(QUERY, d) for d in docs], show_progress_bar=False)

        what = f"sentence-transformers CrossEncoder.predict, max_length={tokens} (fp32)"
    else:
        from jp_rerank import Reranker

        precision = cast("PrecisionOption", method.split("-", 1)[1])
        reranker = Reranker(model, device="cpu", backend="torch", precision=precision, max_length=tokens).load()
        tokenizer = reranker.tokenizer

        def score(docs: list[str]) -> Any:
            return reranker.score(QUERY, docs)

        what = f"Reranker(backend='torch', precision='{precision}', max_length={tokens}); token budget " + str(
            reranker._load().token_budget
        )
    passage = _passage(tokenizer, tokens)
    pair_tokens = min(tokens, len(tokenizer(QUERY, passage, verbose=False)["input_ids"]))
    score(["短い文書です。"])  # warm up
    import gc

    gc.collect()
    rss = _status_mib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    out = score([passage])
    seconds = time.perf_counter() - started
    peak = _status_mib("VmHWM")
    return {
        "method": method,
        "what": what,
        "pair_tokens": pair_tokens,
        "seconds": round(seconds, 2),
        "rss_loaded_mib": round(rss),
        "peak_mib": round(peak),
        "extra_peak_mib": round(peak - rss),
        "score": float(out[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="base-v2", help="same-shape model (a ModernBERT shape of jp_rerank.testing)")
    parser.add_argument("--model", help="measure this cross-encoder folder instead of --shape")
    parser.add_argument("--tokens", type=int, default=8192, help="pair length in tokens (default 8192)")
    parser.add_argument("--methods", default="ours-fp32,ours-bf16,st-predict", help="comma-separated methods")
    parser.add_argument("--models-dir", default=str(Path.home() / ".cache" / "jp-rerank" / "bench-models"))
    parser.add_argument("--out", default=str(RESULTS), help="folder for long_pair_memory.json / .md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.tokens)))
        return 0

    from jp_rerank.evaluation.bench_models import same_shape_cross_encoder
    from jp_rerank.evaluation.timing import load_average
    from jp_rerank.hardware import machine_info
    from jp_rerank.runtime import cpu_supports_bf16

    load_start = load_average()
    if args.model:
        model, note = args.model, "the given model"
    else:
        Path(args.models_dir).mkdir(parents=True, exist_ok=True)
        model, note = same_shape_cross_encoder(args.shape, Path(args.models_dir))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "ours-bf16" in methods and not cpu_supports_bf16():
        methods.remove("ours-bf16")
    rows = []
    for method in methods:
        cmd = [sys.executable, __file__, "--child", method, "--model", model, "--tokens", str(args.tokens)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            rows.append({"method": method, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    m = machine_info().to_dict()
    report = {
        "model": model,
        "model_note": note,
        "tokens": args.tokens,
        "machine": m,
        "load_average": {"start": load_start, "end": load_average()},
        "rows": rows,
    }
    feats = " ".join(k for k, v in (m.get("cpu_features") or {}).items() if v)
    lines = [
        "# One long pair: peak memory on CPU",
        "",
        f"- Machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable cores, {m.get('ram_gb')} GiB, "
        f"torch {m.get('torch')}; CPU features: {feats}",
        f"- Load average (1/5/15 min) at start {load_start}, end {report['load_average']['end']}",
        f"- Model: {note} ({model}); one (query, passage) pair of {args.tokens} tokens, scored alone",
        "- Extra peak: resident memory above the loaded, warmed-up model while scoring that one pair",
        "",
        "| method | pair tokens | seconds | RSS loaded MiB | peak MiB | extra peak MiB | what ran |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | - | - | - | - | - | could not run: {r['error']} |")
            continue
        lines.append(
            f"| {r['method']} | {r['pair_tokens']} | {r['seconds']} | {r['rss_loaded_mib']} | {r['peak_mib']} | "
            f"{r['extra_peak_mib']} | {r['what']} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_pair_memory.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (out / "long_pair_memory.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
