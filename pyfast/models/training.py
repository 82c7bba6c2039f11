"""Small training utilities shared by examples/ and `python -m pyfast demo`: progress bars (tqdm when installed),
a loss log with a PNG curve (matplotlib when installed), atomic checkpoints, resumable checkpoints (model, optimizer,
step, every RNG, data position, collator stream) with a stop-at-the-next-step on SIGINT/SIGTERM, DDP setup from
torchrun's environment, a cross-rank parameter check, and packing token streams into fixed-length blocks.

Nothing here is clever; it exists so the examples stay short and the demo (installed) does not import examples/.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from .._io import atomic_write, fsync_dir, fsync_file, replace


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

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [dict(r) for r in state["rows"]]

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
def save_checkpoint(model, directory: str, optimizer=None, step: int | None = None, tokenizer=None,
                    extra: dict | None = None) -> str:
    """Write model (save_pretrained), tokenizer vocab and optimizer/step (and ``extra``, merged into
    trainer_state.pt) into a temp directory, then swap it into place with os.replace: a reader sees the old
    checkpoint or the new one, never half of one."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(directory)}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save(tmp)
    if optimizer is not None or step is not None or extra:
        state = {**(extra or {}), "step": step,
                 "optimizer": optimizer.state_dict() if optimizer is not None else None}
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
    """Destroy the process group while the interpreter is fully alive. The collections first: a DDP model left in
    a reference cycle (an exception's traceback frames, after a stop or an error) holds the gloo group; freed only at
    interpreter finalisation, its worker threads' tensors take the GIL there and the process aborts ("terminate
    called without an active exception", seen once in 2-process resume runs; pytorch/pytorch#179291)."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


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


# ---- resumable training --------------------------------------------------------------------------------------
# A run checkpointed at a step boundary and restarted with --resume must draw exactly what the uninterrupted run
# would have drawn next: the model and optimizer, the step (the LR schedule is a function of it), every global RNG
# a step may consume (dropout and attention-dropout seeds: torch; numpy and random for user code), the position in
# the shuffled data and the collator's mask stream. Each rank has its own shard, shuffle and mask stream, so that
# per-rank part is gathered to rank 0, which writes; on resume rank 0 reads and broadcasts, so every rank starts
# from the very same checkpoint (and only rank 0's node has to see the files).
def rng_state() -> dict:
    """Every global RNG a training step may draw from: python random, numpy, torch CPU and (when initialised) the
    current CUDA device. Lists, ints and tensors only, so torch.load(weights_only=True) reads it back."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's device (torch.cuda.set_device(local_rank))
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class ShuffledBatches:
    """Endless batches of row indices, a fresh permutation of range(n_rows) per epoch (the tail that does not fill
    a batch is dropped), with state_dict / load_state_dict: the generator's state before the current epoch's
    permutation and the position in it, so a restored iterator yields exactly what the original would have."""

    def __init__(self, n_rows: int, batch_size: int, seed: int):
        if not 1 <= batch_size <= n_rows:
            raise ValueError(f"ShuffledBatches: batch_size must be in [1, n_rows={n_rows}], got {batch_size}")
        self.n_rows, self.batch_size = n_rows, batch_size
        self._gen = torch.Generator().manual_seed(seed)
        self._epoch_start = None  # generator state before this epoch's randperm (None: no epoch drawn yet)
        self._order: torch.Tensor | None = None
        self._pos = 0
        self.epoch = -1

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self._order is None or self._pos + self.batch_size > self.n_rows:
            self._epoch_start = self._gen.get_state()
            self._order = torch.randperm(self.n_rows, generator=self._gen)
            self._pos, self.epoch = 0, self.epoch + 1
        batch = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"n_rows": self.n_rows, "batch_size": self.batch_size, "epoch": self.epoch, "pos": self._pos,
                "epoch_start": self._epoch_start}

    def load_state_dict(self, state: dict) -> None:
        if (state["n_rows"], state["batch_size"]) != (self.n_rows, self.batch_size):
            raise ValueError(f"ShuffledBatches: the checkpoint was taken over {state['n_rows']} rows in batches of "
                             f"{state['batch_size']}, this run has {self.n_rows} rows in batches of "
                             f"{self.batch_size} (other data?)")
        self.epoch, self._pos, self._epoch_start = state["epoch"], state["pos"], state["epoch_start"]
        self._order = None
        if self._epoch_start is not None:  # replay this epoch's permutation; it leaves the generator where it was
            self._gen.set_state(self._epoch_start)
            self._order = torch.randperm(self.n_rows, generator=self._gen)


class TrainingInterrupted(Exception):
    """A training loop stopped at a step boundary (a signal, or ``after_steps`` reached) after saving a resumable
    checkpoint. ``exit_code``: 128 + the signal number (130 for SIGINT, 143 for SIGTERM), 0 for a planned stop."""

    def __init__(self, step: int, total: int, checkpoint: str, signum: int | None = None):
        self.step, self.total, self.checkpoint, self.signum = step, total, checkpoint, signum
        why = f"interrupted by {signal.Signals(signum).name}" if signum else "stopped as asked"
        super().__init__(f"{why} at step {step} of {total}; resumable checkpoint {checkpoint}; "
                         "continue with --resume")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


class StopRequest:
    """Says when a training loop should stop at the next step boundary: after SIGINT or SIGTERM (caught while this
    is entered as a context manager on the main thread), or once ``after_steps`` steps of this run are done.

    The handlers only set a flag: the step under way finishes, the loop saves and stops, so the checkpoint is
    consistent. A second Ctrl-C more than 2 s after the first raises KeyboardInterrupt (no checkpoint): someone
    who will not wait. Sooner ones are ignored, because torchrun forwards the terminal's SIGINT to workers that
    already got it from the terminal, and SIGTERMs them on its own.
    """

    def __init__(self, after_steps: int | None = None, signals=(signal.SIGINT, signal.SIGTERM)):
        if after_steps is not None and after_steps < 1:
            raise ValueError(f"StopRequest: after_steps must be >= 1 or None, got {after_steps}")
        self.after_steps, self.signals = after_steps, tuple(signals)
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal.signal works on the main thread only
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _on_signal(self, signum, frame) -> None:
        # No printing here: the signal may land inside a print of the main thread (a reentrant-write error).
        if self.signum is None:
            self.signum, self._first_at = signum, time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._first_at > 2.0:
            raise KeyboardInterrupt

    def check(self, steps_done: int, dist: DistInfo | None = None) -> int | None:
        """None: go on. Else the signal number, or 0 when after_steps is reached. Collective under DDP (every rank
        calls it after every step): a signal that reached one rank stops all of them at the same step."""
        signum = self.signum or 0
        if dist is not None and dist.enabled:
            import torch.distributed

            flag = torch.tensor([signum], dtype=torch.int64, device=dist.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            return signum
        if self.after_steps is not None and steps_done >= self.after_steps:
            return 0
        return None


def _broadcast_object(obj, dist: DistInfo):
    if not dist.enabled:
        return obj
    import torch.distributed

    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _gather_objects(obj, dist: DistInfo) -> list | None:
    """[rank 0's obj, rank 1's, ...] on rank 0, None elsewhere."""
    if not dist.enabled:
        return [obj]
    import torch.distributed

    out = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


class ResumableRun:
    """Resumable checkpoints of one training run, and the stop-at-the-next-step on SIGINT / SIGTERM.

    Layout: ``out_dir/checkpoints/step-<N>/`` (save_checkpoint's folder: config.json and weights that
    from_pretrained loads, vocab.txt, trainer_state.pt with the optimizer, step, settings and every rank's RNG,
    data and collator state) and ``out_dir/checkpoints/latest``, one line naming the newest. Both are written to a
    temp name, fsynced and renamed, the pointer last: a run killed at any point leaves ``latest`` naming a complete
    checkpoint. The newest ``keep`` are kept.

    ``settings``: what must match for a resume to reproduce the run (steps, sizes, seed, world size, vocabulary):
    a resume under other settings is a ValueError naming them. ``state``: objects with state_dict() /
    load_state_dict() saved per rank (ShuffledBatches, the collator, the LossLog); the RNG states are added.
    Under DDP every method but latest() is collective: call it on every rank.

        run = ResumableRun(out_dir, model, optimizer, settings=..., dist=dist, save_every=100, stop=StopRequest(),
                           batches=batches, collator=collator, log=log)
        with run:                                  # installs the signal handlers
            for step in range(run.restore() if resume else 0, total):
                ...one optimizer step...
                run.step_done(step + 1, total)     # saves every save_every steps; on a stop: saves, raises
    """

    def __init__(self, out_dir: str, model, optimizer, *, settings: dict, tokenizer=None, dist: DistInfo | None = None,
                 save_every: int = 0, stop: StopRequest | None = None, keep: int = 2, **state):
        if keep < 1:
            raise ValueError(f"ResumableRun: keep must be >= 1, got {keep}")
        self.directory = os.path.join(out_dir, "checkpoints")
        self.model, self.optimizer, self.tokenizer = getattr(model, "module", model), optimizer, tokenizer
        self.settings, self.dist, self.keep = dict(settings), dist or DistInfo(), keep
        self.save_every, self.stop, self.state = save_every, stop, state
        self.first_step = 0

    def __enter__(self):
        if self.stop is not None:
            self.stop.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self.stop is not None:
            self.stop.__exit__(*exc)
        return False

    # -- where -------------------------------------------------------------------------------------------------
    def latest(self) -> str | None:
        """The newest complete checkpoint's folder, or None when there is none."""
        pointer = os.path.join(self.directory, "latest")
        try:
            with open(pointer, encoding="utf-8") as fh:
                name = fh.read().strip()
        except FileNotFoundError:
            return None
        path = os.path.join(self.directory, name)
        if not name.startswith("step-") or os.sep in name or not os.path.isfile(os.path.join(path, "trainer_state.pt")):
            raise ValueError(f"{pointer} names {name!r}, which is not a complete checkpoint in {self.directory}")
        return path

    # -- save --------------------------------------------------------------------------------------------------
    def step_done(self, step: int, total: int) -> None:
        """Call after every optimizer step (``step`` steps done out of ``total``): saves every save_every steps and
        at the end (when save_every > 0); when the StopRequest says stop, saves and raises TrainingInterrupted."""
        reason = self.stop.check(step - self.first_step, self.dist) if self.stop is not None else None
        if reason is not None and step < total:
            raise TrainingInterrupted(step, total, self.save(step), reason or None)
        if self.save_every and (step % self.save_every == 0 or step == total):
            self.save(step)

    def save(self, step: int) -> str:
        """Write the checkpoint of `step` (rank 0), point `latest` at it, drop the oldest beyond `keep`."""
        rank_states = _gather_objects({"rng": rng_state(), **{k: v.state_dict() for k, v in self.state.items()}},
                                      self.dist)
        name = f"step-{step:08d}"
        path = os.path.join(self.directory, name)
        failure = None
        if self.dist.is_main:
            try:
                save_checkpoint(self.model, path, self.optimizer, step, self.tokenizer,
                                extra={"settings": self.settings, "ranks": rank_states})
                atomic_write(os.path.join(self.directory, "latest"), lambda fh: fh.write(name + "\n"), text=True)
                self._prune(name)
            except Exception as exc:  # noqa: BLE001 - told to every rank below, then re-raised here
                failure = exc
        message = _broadcast_object(None if failure is None else f"{type(failure).__name__}: {failure}", self.dist)
        if failure is not None:
            raise failure
        if message is not None:
            raise RuntimeError(f"rank 0 failed to save the checkpoint {path}: {message}")
        return path

    def _prune(self, newest: str) -> None:
        names = sorted(n for n in os.listdir(self.directory) if n.startswith("step-") and n <= newest)
        for old in names[:-self.keep]:
            shutil.rmtree(os.path.join(self.directory, old), ignore_errors=True)

    # -- restore -----------------------------------------------------------------------------------------------
    def restore(self) -> int:
        """Load the latest checkpoint into the model, optimizer, RNGs and state objects; -> the step to continue
        from. Without a checkpoint, says so on rank 0's stderr and returns 0 (a fresh start)."""
        payload = None
        if self.dist.is_main:
            try:
                path = self.latest()
                payload = {"path": path}
                if path is not None:
                    payload["trainer"] = torch.load(os.path.join(path, "trainer_state.pt"), map_location="cpu",
                                                    weights_only=True)
                    from .modeling_utils import load_state_dict

                    payload["weights"] = load_state_dict(path)
            except Exception as exc:  # noqa: BLE001 - every rank raises it below, none waits forever
                payload = {"error": f"{type(exc).__name__}: {exc}"}
        payload = _broadcast_object(payload, self.dist)
        if "error" in payload:
            raise RuntimeError(f"resume: cannot read the latest checkpoint in {self.directory}: {payload['error']}")
        path = payload["path"]
        if path is None:
            if self.dist.is_main:
                print(f"resume: no checkpoint in {self.directory}; starting from step 0", file=sys.stderr, flush=True)
            self.first_step = 0
            return 0
        trainer = payload["trainer"]
        saved = trainer.get("settings", {})
        differ = sorted(k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k))
        if differ:
            raise ValueError(f"resume: {path} was written by a run with "
                             f"{', '.join(f'{k}={saved.get(k)!r}' for k in differ)}; this run has "
                             f"{', '.join(f'{k}={self.settings.get(k)!r}' for k in differ)}; resume with the "
                             "same settings (or start afresh in another --out)")
        weights = payload["weights"]
        self.model._check_shapes(weights, path)
        missing, unexpected = self.model._load_adapting_prefix(weights)
        if missing or unexpected:
            raise ValueError(f"resume: {path} does not hold this model's weights: missing {missing}, "
                             f"unexpected {unexpected}")
        self.model.tie_weights()
        self.optimizer.load_state_dict(trainer["optimizer"])
        mine = trainer["ranks"][self.dist.rank]
        for key, obj in self.state.items():
            obj.load_state_dict(mine[key])
        set_rng_state(mine["rng"])
        self.first_step = int(trainer["step"])
        if self.dist.is_main:
            print(f"resume: continuing from {path} (step {self.first_step})", flush=True)
        return self.first_step


def resumable_run(task: str, out_dir: str | None, model, optimizer, tokenizer, dist: DistInfo | None,
                  save_every: int, resume: bool, stop: StopRequest | None, *, settings: dict, **state) -> ResumableRun:
    """The ResumableRun of one of the pretraining tasks (pyfast.demo.tasks), its settings completed with what else
    a resume must match (task, world size, the vocabulary's checksum). Without out_dir: no checkpoints, and
    ``resume`` / ``stop`` are a ValueError."""
    if not out_dir:
        if resume or stop is not None:
            raise ValueError(f"{task}: resume and stop need out_dir (where the checkpoints are)")
        save_every = 0
    dist = dist or DistInfo()
    vocab = getattr(tokenizer, "vocab", None)
    settings = {"task": task, **settings, "world_size": dist.world_size,
                "vocab_sha1": hashlib.sha1("\n".join(vocab).encode()).hexdigest() if vocab is not None else None}
    return ResumableRun(out_dir or "", model, optimizer, settings=settings, tokenizer=tokenizer, dist=dist,
                        save_every=save_every, stop=stop, **state)


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
