"""Timing rules for every pyfast benchmark: check outputs first, warm up, interleave contenders (A B A B ...)
so machine noise hits them alike, report the median and a hardware unit, and quote ratios to a baseline.

A Case is one workload (fixed shapes/settings) with several Contenders; `work` is the amount of work one call
does in `unit`s (e.g. 2*M*N*K*1e-9 for GFLOP/s, or words for words/s) so throughput = work / median seconds.
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable


@dataclass
class Contender:
    name: str
    fn: Callable[[], Any]                     # one timed call; must block until the work is done
    check: Callable[[], None] | None = None   # raises if this contender's output is wrong (run once, untimed)
    setup: Callable[[], None] | None = None   # untimed, before every timed call (e.g. zero gradients)
    extra: dict = field(default_factory=dict)  # per-contender facts to record (e.g. quality scores)


@dataclass
class Case:
    bench: str                 # registry name, e.g. "attention"
    name: str                  # e.g. "fwd+bwd B4 H8 N512 D64 causal fp32"
    contenders: list[Contender]
    work: float                # units of work per call
    unit: str                  # e.g. "GFLOP/s", "Mwords/s", "Mtokens/s"
    baseline: str | None = None  # contender the ratios are quoted against
    params: dict = field(default_factory=dict)
    repeat: int = 7
    warmup: int = 1
    floor_note: str = ""       # e.g. "GEMM peak 190 GFLOP/s"
    device: str = "cpu"        # "cuda": the device is synchronised before and after every timed call


@dataclass
class CaseResult:
    bench: str
    name: str
    unit: str
    baseline: str | None
    params: dict
    seconds: dict              # contender -> list of seconds (all repeats)
    median_s: dict
    throughput: dict           # contender -> work / median
    ratio: dict                # contender -> baseline median / contender median (>1 = faster)
    extra: dict
    floor_note: str = ""
    gc_policy: str = "auto"    # Python's garbage collector during the timed calls (see run_case)
    device: str = "cpu"

    def to_json(self) -> dict:
        return asdict(self)


GC_POLICIES = ("auto", "off", "collect")


def run_case(case: Case, repeat: int | None = None, warmup: int | None = None, gc_policy: str = "auto") -> CaseResult:
    """Time every contender of `case` (see the module docstring).

    gc_policy, Python's cyclic garbage collector during the timed calls (one full collection always runs before
    them, so garbage left by setup and checks is not collected inside a timed call):
      - "auto" (default): the collector runs on its own, as in a training loop;
      - "off": disabled, as timeit does;
      - "collect": a full collection before every timed call. A full collection walks the whole heap (~100 ms
        in a process that has imported transformers) and evicts the caches before each call, which no training
        loop does; it penalises sub-millisecond contenders most.
    """
    repeat = case.repeat if repeat is None else repeat
    warmup = case.warmup if warmup is None else warmup
    if repeat < 1:
        raise ValueError(f"run_case: repeat must be >= 1, got {repeat}")
    if gc_policy not in GC_POLICIES:
        raise ValueError(f"run_case: gc_policy must be one of {GC_POLICIES}, got {gc_policy!r}")
    sync = _synchronizer(case.device)
    for c in case.contenders:
        if c.check is not None:
            c.check()
    for _ in range(warmup):
        for c in case.contenders:
            if c.setup is not None:
                c.setup()
            c.fn()
    sync()
    seconds: dict[str, list[float]] = {c.name: [] for c in case.contenders}
    gc.collect()
    was_enabled = gc.isenabled()
    if gc_policy == "off":
        gc.disable()
    try:
        for r in range(repeat):
            # Alternate the order each round (A B, B A, ...) so neither contender always runs on a warm cache.
            order = case.contenders if r % 2 == 0 else list(reversed(case.contenders))
            for c in order:
                if c.setup is not None:
                    c.setup()
                if gc_policy == "collect":
                    gc.collect()
                sync()
                t0 = time.perf_counter()
                c.fn()
                sync()
                seconds[c.name].append(time.perf_counter() - t0)
    finally:
        if was_enabled:
            gc.enable()
    median = {k: statistics.median(v) for k, v in seconds.items()}
    throughput = {k: (case.work / m if m > 0 else float("inf")) for k, m in median.items()}
    base = case.baseline if case.baseline in median else None
    ratio = {k: (median[base] / m if base and m > 0 else None) for k, m in median.items()}
    return CaseResult(
        bench=case.bench, name=case.name, unit=case.unit, baseline=base, params=case.params, seconds=seconds,
        median_s=median, throughput=throughput, ratio=ratio, extra={c.name: c.extra for c in case.contenders if c.extra},
        floor_note=case.floor_note, gc_policy=gc_policy, device=case.device,
    )


def _synchronizer(device: str) -> Callable[[], None]:
    """What makes one timed call block until its work is done: a device sync on CUDA (wall clock around a
    synchronised call, so CPU, GPU and mixed contenders are timed alike), nothing on the CPU."""
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def run_cases(cases: Iterable[Case], repeat: int | None = None, warmup: int | None = None, progress=print,
              gc_policy: str = "auto", budget_s: float | None = None, skipped: list | None = None,
              on_result: Callable[[Case, CaseResult], None] | None = None) -> list[CaseResult]:
    """Runs cases one after another. `cases` may be a generator (GPU benchmarks build each case's tensors only when
    it runs); once `budget_s` seconds have passed the remaining cases are listed in `skipped` instead of run."""
    results = []
    t_begin = time.perf_counter()
    for case in cases:
        if budget_s is not None and time.perf_counter() - t_begin > budget_s:
            if skipped is not None:
                skipped.append(f"{case.bench}: {case.name}")
            continue
        if progress:
            progress(f"  running {case.bench}: {case.name} ...")
        res = run_case(case, repeat=repeat, warmup=warmup, gc_policy=gc_policy)
        if on_result is not None:
            on_result(case, res)
        results.append(res)
    return results


def format_table(results: list[CaseResult]) -> str:
    lines = []
    header = f"{'bench':<10} {'case':<44} {'contender':<22} {'median ms':>10} {'throughput':>18} {'x base':>7}"
    lines.append(header)
    lines.append("-" * len(header))
    for res in results:
        for name, med in res.median_s.items():
            r = res.ratio.get(name)
            tp = res.throughput[name]
            lines.append(
                f"{res.bench:<10} {res.name[:44]:<44} {name[:22]:<22} {med * 1e3:>10.3f} "
                f"{tp:>10.3f} {res.unit:<7} {('' if r is None else f'{r:.2f}'):>7}"
            )
        if res.floor_note:
            lines.append(f"{'':<10} {'  floor: ' + res.floor_note}")
    return "\n".join(lines)


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host_cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    try:
        from .._info import info as pyfast_info

        info["pyfast"] = pyfast_info()
    except Exception as exc:  # pragma: no cover - a broken build should still let peers be measured
        info["pyfast_error"] = repr(exc)
    return info


def write_record(path: str, record: dict) -> None:
    """Writes a benchmark record as JSON atomically (temp file, then rename): a crash never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh, indent=1)
    os.replace(tmp, path)


def plot(results: list[CaseResult], path: str) -> bool:
    """Bar chart of throughput per case and contender; returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(8, max(2.2 * n, 2.5)), squeeze=False)
    for ax, res in zip(axes[:, 0], results):
        names = list(res.throughput)
        vals = [res.throughput[k] for k in names]
        ax.barh(names, vals, color=["#3a7" if k.startswith("pyfast") else "#888" for k in names])
        ax.set_title(f"{res.bench}: {res.name}", fontsize=9)
        ax.set_xlabel(res.unit, fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True
