"""Serving under concurrent load: ``jp-rerank serve`` vs one-request-at-a-time scoring vs infinity, on loopback.

Each system serves the same model folder (ja-ce-mini by default, a real CPU-trained Japanese cross-encoder) on
127.0.0.1 and is sent the same request mix: a JSQuAD question with 20-100 JSQuAD passages per request (seeded).
For 1, 8 and 32 concurrent clients (closed loop: each client sends its next request when the previous one is
answered, over one keep-alive connection), after a warm-up, a fixed number of requests (``--min-requests``, at least
one per client) is timed from the first send to the last answer: requests/s, pairs/s and p50 / p99 latency. Rows:

* ``jp-rerank serve``: the defaults (cross-request batching through one scoring queue);
* ``one-at-a-time``: the same server and engine with ``--max-batch-requests 1`` (no batching across requests);
* ``infinity``: ``infinity_emb v2`` (torch engine, CPU) from a separate virtual environment (``--infinity``,
  default ``/tmp/infinity-venv/bin/infinity_emb``); skipped with the reason when it cannot be run.

The load generator uses standard-library threads (each mostly waiting on its socket), so it takes little of the
CPU the servers share with it. Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/serve_bench.py [--model DIR] [--data DIR] [--clients 1 8 32] [--min-requests 32] [--quick]
        [--infinity /tmp/infinity-venv/bin/infinity_emb] [--out benchmarks/results/serve_bench.md]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _paths import JA_CE_MINI, RESULTS, data_dir, offline_model

from jp_rerank._version import __version__
from jp_rerank.hardware import machine_info


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def request_mix(
    folder: Path, n: int, lo: int, hi: int, seed: int
) -> tuple[list[tuple[str, list[str]]], dict[str, Any]]:
    """``n`` (question, passages) requests with ``lo``-``hi`` passages each, and the data's statistics."""
    passages = [row["text"] for row in read_jsonl(folder / "corpus.jsonl")]
    questions = [row["text"] for row in read_jsonl(folder / "queries.jsonl")]
    rng = random.Random(seed)
    mix = [(rng.choice(questions), rng.sample(passages, rng.randint(lo, hi))) for _ in range(n)]
    docs = [len(d) for _, d in mix]
    stats = {
        "dataset": folder.name,
        "passages": len(passages),
        "questions": len(questions),
        "requests_in_mix": n,
        "documents_per_request": {"min": min(docs), "mean": round(statistics.mean(docs), 1), "max": max(docs)},
        "mean_passage_chars": round(statistics.mean(len(p) for p in passages), 1),
    }
    return mix, stats


class Server:
    """A server process on 127.0.0.1 with its output in a log file; stopped with SIGTERM (then killed)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = ""

    def text(self) -> str:
        """What the server has logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, url: str | None, timeout: float) -> str:
        """Wait until ``/health`` answers 200 (the URL from the log when ``url`` is None); return the URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.text()[-2000:]}")
            if url is None:
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.text())
                self.url = found.group(1) if found else ""
            else:
                self.url = url
            if self.url:
                try:
                    with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                        if response.status == 200:
                            return self.url
                except OSError:
                    pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s: {self.text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


def run_cell(
    url: str, path: str, bodies: list[bytes], sizes: list[int], clients: int, per_client: int
) -> dict[str, Any]:
    """Closed-loop load of ``clients`` threads sending ``per_client`` requests each; statistics over all of them.

    Each client sends its next request when the previous one is answered; the cell is timed from the first send to
    the last answer.

    A fixed number of requests rather than a time window: on 2 cores a 32-client batch of ja-ce-mini requests takes
    minutes, so a window of seconds would count whole bursts or none of them.
    """
    host, port = url.removeprefix("http://").split(":")
    counter = itertools.count()
    records: list[tuple[float, float, int, int]] = []  # (start, end, status, documents)
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=1800)
        for _ in range(per_client):
            i = next(counter) % len(bodies)
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[i], headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=1800)
            with lock:
                records.append((t0, time.perf_counter(), status, sizes[i]))
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    span = time.perf_counter() - begin
    ok = [r for r in records if r[2] == 200]
    latencies = sorted(r[1] - r[0] for r in ok)
    return {
        "clients": clients,
        "requests": len(ok),
        "errors": len(records) - len(ok),
        "wall_s": round(span, 1),
        "requests_per_s": round(len(ok) / span, 3),
        "pairs_per_s": round(sum(r[3] for r in ok) / span, 1),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    rank = max(1, min(len(values), round(q / 100 * len(values) + 0.5)))
    return values[rank - 1]


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=600) as response:
        return json.loads(response.read())


def jp_rerank_cmd(args: argparse.Namespace, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jp_rerank",
        "--threads",
        str(args.threads),
        "serve",
        "-m",
        str(args.model),
        "--port",
        "0",
        "--max-wait-ms",
        "600000",
        "--queue-size",
        "4096",
        *extra,
    ]


def transformers4_view(model: Path, workdir: Path) -> tuple[Path, str | None]:
    """The model folder as transformers 4 (infinity's) can load it, and what had to change.

    Folders saved by transformers 5 name their tokenizer class ``TokenizersBackend``, which transformers 4 does not
    know; the view links every file and rewrites only that name to ``PreTrainedTokenizerFast`` (the same
    ``tokenizer.json``, so the same tokens).
    """
    config = json.loads((model / "tokenizer_config.json").read_text(encoding="utf-8"))
    if config.get("tokenizer_class") != "TokenizersBackend":
        return model, None
    view = workdir / f"{model.name}-transformers4"
    view.mkdir(exist_ok=True)
    for item in model.iterdir():
        if item.name != "tokenizer_config.json" and not (view / item.name).exists():
            (view / item.name).symlink_to(item.resolve())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (view / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return (
        view,
        "tokenizer_config.json's tokenizer_class TokenizersBackend (transformers 5) read as PreTrainedTokenizerFast",
    )


def systems(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ours = [("jp-rerank serve", []), ("one-at-a-time", ["--max-batch-requests", "1"])]
    if not args.no_fp32_row:
        ours.append(("jp-rerank serve torch-fp32", ["--backend", "torch", "--precision", "fp32"]))
    rows: list[dict[str, Any]] = [
        {"name": name, "cmd": jp_rerank_cmd(args, [*args.serve_args, *extra]), "env": env, "url": None}
        for name, extra in ours
    ]
    exe = Path(args.infinity)
    if args.skip_infinity:
        rows.append({"name": "infinity", "skip": "skipped (--skip-infinity)"})
    elif not exe.is_file():
        rows.append({"name": "infinity", "skip": f"{exe} not found: infinity_emb is not installed there"})
    else:
        port = args.infinity_port
        folder, change = transformers4_view(args.model, workdir)
        cmd = [str(exe), "v2", "--model-id", str(folder), "--port", str(port), "--host", "127.0.0.1"]
        cmd += ["--engine", "torch", "--device", "cpu", "--no-bettertransformer", "--batch-size", "32"]
        inf_env = {
            **env,
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "DO_NOT_TRACK": "1",
            "OMP_NUM_THREADS": str(args.threads),
        }
        row = {"name": "infinity", "cmd": cmd, "env": inf_env, "url": f"http://127.0.0.1:{port}", "model": str(folder)}
        rows.append({**row, "note": change} if change else row)
    return rows


def bench_system(
    row: dict[str, Any], args: argparse.Namespace, mix: list[tuple[str, list[str]]], workdir: Path
) -> dict[str, Any]:
    name = row["name"]
    result: dict[str, Any] = {"name": name, "cells": []}
    if "skip" in row:
        result["skipped"] = row["skip"]
        return result
    server = Server(name, row["cmd"], row["env"], workdir / f"{name.replace(' ', '-')}.log")
    try:
        t0 = time.perf_counter()
        url = server.wait_ready(row["url"], timeout=args.start_timeout)
        result["start_s"] = round(time.perf_counter() - t0, 1)
        plan = re.search(r"reranker .*?: (.+?), max_length", server.text())
        result["plan"] = plan.group(1) if plan else None
        model_field = {"model": row["model"]} if "model" in row else {}
        if row.get("note"):
            result["note"] = row["note"]
        bodies = [
            json.dumps(
                {**model_field, "query": q, "documents": d, "return_documents": False}, ensure_ascii=False
            ).encode()
            for q, d in mix
        ]
        sizes = [len(d) for _, d in mix]
        sample = post(url, "/rerank", json.loads(bodies[0]))["results"]
        result["sample_scores"] = [r["relevance_score"] for r in sorted(sample, key=lambda r: r["index"])]
        for i in range(args.warmup):  # the first calls pay for lazy set-up (allocations, thread pools)
            post(url, "/rerank", json.loads(bodies[-1 - i]))
        for clients in args.clients:
            per_client = max(1, -(-args.min_requests // clients))
            cell = run_cell(url, "/rerank", bodies, sizes, clients, per_client)
            print(f"{name:16s} clients={clients:3d} {cell}", flush=True)
            result["cells"].append(cell)
        batches = re.findall(r"jp_rerank_batch_requests_(sum|count)\{[^}]*\} ([0-9.]+)", metrics_text(url))
        if batches:
            values = dict(batches)
            result["mean_requests_per_engine_call"] = round(float(values["sum"]) / max(1.0, float(values["count"])), 2)
    except (RuntimeError, OSError) as exc:
        result["skipped"] = f"failed: {exc}"[:1500]
    finally:
        server.stop()
        result["exit_code"] = server.proc.returncode
    return result


def metrics_text(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            return response.read().decode()
    except OSError:
        return ""


def lscpu() -> dict[str, str]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in info.items() if k.strip() in ("Model name", "CPU(s)", "Flags")}


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    m = report["machine"]
    lines = [
        "# Serving benchmark: `jp-rerank serve` vs one-at-a-time vs infinity",
        "",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs; flags of note: {m['flags_of_note']}; "
        f"torch threads {report['threads']}",
        f"- Load average (1/5/15 min) at start {report['load_start']}, end {report['load_end']}; "
        f"elapsed {report['elapsed_s']} s",
        f"- Model: {report['model']}; jp-rerank {report['version']}, Python {report['python']}",
        f"- Data: {report['data']['dataset']} ({report['data']['passages']} passages, {report['data']['questions']} "
        f"questions, mean passage {report['data']['mean_passage_chars']} characters); request mix: "
        f"{report['data']['requests_in_mix']} seeded requests of {report['data']['documents_per_request']['min']}-"
        f"{report['data']['documents_per_request']['max']} passages (mean "
        f"{report['data']['documents_per_request']['mean']}). JSQuAD (JGLUE), CC BY-SA 4.0",
        f"- Per server: {report['warmup_requests']} warm-up requests one by one, then per cell at least "
        f"{report['min_requests']} requests (one or more per client), timed from the first send to the last answer; "
        "closed-loop clients on 127.0.0.1, one keep-alive connection each",
        "",
        "| system | clients | requests/s | pairs/s | p50 s | p99 s | requests | errors | wall s "
        "| pairs/s vs one-at-a-time | pairs/s vs infinity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_name = {s["name"]: {c["clients"]: c for c in s["cells"]} for s in report["systems"]}

    def ratio(cell: dict[str, Any], baseline: str) -> str:
        ref = by_name.get(baseline, {}).get(cell["clients"])
        return f"{cell['pairs_per_s'] / ref['pairs_per_s']:.2f}" if ref and ref["pairs_per_s"] else "-"

    for system in report["systems"]:
        for c in system["cells"]:
            lines.append(
                f"| {system['name']} | {c['clients']} | {c['requests_per_s']:.2f} | {c['pairs_per_s']:.1f} | "
                f"{c['p50_s']} | {c['p99_s']} | {c['requests']} | {c['errors']} | {c['wall_s']} | "
                f"{ratio(c, 'one-at-a-time')} | {ratio(c, 'infinity')} |"
            )
    lines.append("")
    ref_scores = next((s.get("sample_scores") for s in report["systems"] if s["name"] == "one-at-a-time"), None)
    for system in report["systems"]:
        notes = [f"start {system.get('start_s')} s"] if "start_s" in system else []
        scores = system.get("sample_scores")
        if ref_scores and scores and len(scores) == len(ref_scores):
            diff = max(abs(a - b) for a, b in zip(scores, ref_scores, strict=True))
            notes.append(f"max abs score difference from one-at-a-time on the first request: {diff:.2e}")
        if system.get("plan"):
            notes.append(f"backend plan: {system['plan']}")
        if "mean_requests_per_engine_call" in system:
            notes.append(f"mean requests per engine call: {system['mean_requests_per_engine_call']}")
        if system.get("note"):
            notes.append(f"model folder: {system['note']}")
        if system.get("skipped"):
            notes.append(f"not measured: {system['skipped']}")
        lines.append(f"- **{system['name']}**: " + "; ".join(notes))
    lines += ["", report.get("notes", ""), ""]
    out.write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=offline_model(JA_CE_MINI))
    parser.add_argument("--data", type=Path, default=data_dir("jsquad-valid"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--min-requests", type=int, default=32, help="requests per cell at least (per client: 1+)")
    parser.add_argument("--warmup", type=int, default=2, help="requests sent one by one before the first cell")
    parser.add_argument("--requests", type=int, default=200, help="requests in the seeded mix")
    parser.add_argument("--min-docs", type=int, default=20)
    parser.add_argument("--max-docs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--infinity", default="/tmp/infinity-venv/bin/infinity_emb")
    parser.add_argument("--infinity-port", type=int, default=7997)
    parser.add_argument("--skip-infinity", action="store_true")
    parser.add_argument("--no-fp32-row", action="store_true", help="skip `jp-rerank serve --precision fp32`")
    parser.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[], help="extra `jp-rerank serve` options")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 8 requests per cell (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_bench.md")
    args = parser.parse_args()
    if args.model is None or args.data is None:
        parser.error("no model or data folder found: pass --model and --data")
    if args.quick:
        args.clients, args.min_requests, args.warmup = [1, 8], 8, 1
    started, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    mix, data_stats = request_mix(args.data, args.requests, args.min_docs, args.max_docs, args.seed)
    info, cpu = machine_info(include_torch=False), lscpu()
    flags = cpu.get("Flags", "").split()
    of_note = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        for row in systems(args, Path(tmp)):
            results.append(bench_system(row, args, mix, Path(tmp)))
    report = {
        "machine": {
            "cpu": cpu.get("Model name", info.cpu_model),
            "cpus": cpu.get("CPU(s)"),
            "flags": flags,
            "flags_of_note": " ".join(of_note) or "none",
        },
        "threads": args.threads,
        "load_start": load_start,
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(time.perf_counter() - started, 1),
        "model": args.model.name,
        "version": __version__,
        "python": platform.python_version(),
        "data": data_stats,
        "warmup_requests": args.warmup,
        "min_requests": args.min_requests,
        "systems": results,
        "notes": "Each server runs alone (one after the other) on the same CPUs as the load generator.",
    }
    write_report(report, args.out)
    print(args.out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
