"""Small training utilities shared by examples/ and `python -m pyfast demo`: progress bars (tqdm when installed),
a loss log with a PNG curve (matplotlib when installed), atomic checkpoints, DDP setup from torchrun's environment,
a cross-rank parameter check, and packing token streams into fixed-length blocks.

Nothing here is clever; it exists so the examples stay short and the demo (installed) does not import examples/.
"""
from __future__ import annotations

import csv
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from .._io import fsync_dir, fsync_file, replace


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- progress and loss log -----------------------------------------------------------------------------------
class _PlainProgress:
    """tqdm's few methods we use, printing a line every ~10% (for installs without tqdm)."""

    def __init__(self, total, desc, disable):
        self.total, self.desc, self.disable, self.n, self.postfix = total, desc, disable, 0, ""
        self.every = max(1, (total or 10) // 10)

    def update(self, n=1):
        self.n += n
        if not self.disable and (self.n % self.every == 0 or self.n == self.total):
            print(f"  {self.desc}: {self.n}/{self.total} {self.postfix}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.postfix = text

    def close(self):
        pass


def progress_bar(total: int, desc: str, disable: bool = False):
    """tqdm on a terminal; a line every ~10% when output goes to a file or pipe (or tqdm is not installed)."""
    if not sys.stderr.isatty():
        return _PlainProgress(total, desc, disable)
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False, file=sys.stderr)
    except ImportError:
        return _PlainProgress(total, desc, disable)


class LossLog:
    """(step, loss, extra columns) rows; written as CSV and drawn as a PNG curve, both atomically."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, step: int, loss: float, **extra) -> None:
        self.rows.append({"step": step, "loss": float(loss), **extra})

    def losses(self) -> list[float]:
        return [r["loss"] for r in self.rows]

    def smoothed(self, first: bool, window: int = 10) -> float:
        """Mean loss over the first or last `window` logged steps (a single step is too noisy to compare)."""
        window = max(1, min(window, len(self.rows) // 4))  # short runs: a quarter of the steps at each end
        values = self.losses()[:window] if first else self.losses()[-window:]
        return float(np.mean(values)) if values else float("nan")

    def write_csv(self, path: str) -> None:
        if not self.rows:
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, path)

    def plot(self, path: str, title: str) -> bool:
        """PNG loss curve (raw and a moving average); False when matplotlib is not installed."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        steps = [r["step"] for r in self.rows]
        losses = self.losses()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, losses, color="#9ab", linewidth=0.8, label="loss")
        if len(losses) >= 10:
            k = max(2, len(losses) // 20)
            avg = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], avg, color="#173", linewidth=1.6, label=f"mean of {k}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        tmp = f"{path}.tmp{os.getpid()}.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
        return True


# ---- checkpoints ---------------------------------------------------------------------------------------------
def save_checkpoint(model, directory: str, optimizer=None, step: int | None = None, tokenizer=None) -> str:
    """Write model (save_pretrained), tokenizer vocab and optimizer/step into a temp directory, then swap it into
    place with os.replace: a reader sees the old checkpoint or the new one, never half of one."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(directory)}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save(tmp)
    if optimizer is not None or step is not None:
        state = {"step": step, "optimizer": optimizer.state_dict() if optimizer is not None else None}
        state_path = os.path.join(tmp, "trainer_state.pt")
        torch.save(state, state_path)
        fsync_file(state_path)
    fsync_dir(tmp)  # the files inside are fsynced by their writers; their directory entries now too
    old = None
    if os.path.exists(directory):  # os.replace cannot replace a non-empty directory: move the old one aside first
        old = os.path.join(parent, f".{os.path.basename(directory)}.old{os.getpid()}")
        os.replace(directory, old)
    replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


# ---- distributed ---------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): gloo on CPU,
    nccl on GPU. Without torchrun's variables, returns a single-process DistInfo and starts nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if want_cuda else "cpu"))
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
        # two processes on two cores: one thread each, or they fight over the same cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def max_parameter_difference(model) -> float:
    """Largest |param - rank 0's param| over all parameters and ranks (0.0 when not distributed).
    Every rank must call it (it broadcasts rank 0's parameters)."""
    import torch.distributed as dist

    model = getattr(model, "module", model)
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    worst = torch.zeros((), dtype=torch.float64)
    for p in model.parameters():
        reference = p.detach().clone()
        dist.broadcast(reference, src=0)
        worst = torch.maximum(worst, (p.detach() - reference).abs().max().double().cpu())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


# ---- data ----------------------------------------------------------------------------------------------------
def pack_blocks(token_lists, block_len: int, prefix: list[int] = (), suffix: list[int] = (),
                separator: list[int] = ()) -> torch.Tensor:
    """Concatenate token lists (joined by `separator`) into one stream and cut it into rows of block_len, each
    row = prefix + chunk + suffix (e.g. [CLS] ... [SEP]). Returns int64 (N, block_len); the tail is dropped."""
    body = block_len - len(prefix) - len(suffix)
    if body <= 0:
        raise ValueError(f"pack_blocks: block_len {block_len} leaves no room beside prefix and suffix")
    stream = []
    for ids in token_lists:
        stream.extend(ids)
        stream.extend(separator)
    n = len(stream) // body
    if n == 0:
        return torch.empty(0, block_len, dtype=torch.long)
    chunks = torch.tensor(stream[:n * body], dtype=torch.long).view(n, body)
    parts = [torch.tensor(list(prefix), dtype=torch.long).expand(n, -1), chunks,
             torch.tensor(list(suffix), dtype=torch.long).expand(n, -1)]
    return torch.cat([p for p in parts if p.shape[1]], dim=1)


def pad_batch(token_lists, pad_id: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (truncating at max_len, keeping the last token, e.g. [SEP]) -> input_ids, attention_mask (B, L)."""
    rows = [ids if len(ids) <= max_len else ids[:max_len - 1] + ids[-1:] for ids in token_lists]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        attention_mask[i, :len(r)] = 1
    return input_ids, attention_mask


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
