"""The demo's vision section and the body of examples/pretrain_vit.py: does pretraining a small ViT transfer on
Fashion-MNIST?

(1) MAE-pretrain a ViT on the 60k training images without labels, then linear-probe (frozen encoder, logistic
regression on its pooled features) and fine-tune it with 1% / 10% / 100% of the training labels, against the same
ViT from random init, scored on the 10k test images. (2) Supervised pretraining on classes 0-4, transferred to
classes 5-9 (both splits of those classes only) in the same low-label settings. Every comparison runs for each seed
with the same steps, learning rate and labelled subset for both contenders; rows give mean and spread (std over
seeds). Skipped, with a message, when the Fashion-MNIST files are absent. CPU-sized: a 2-core run of the full
setting takes minutes, not hours; numbers are for this tiny budget, not the state of the art.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write

__all__ = ["VisionSettings", "run", "QUICK", "FULL"]

# Fashion-MNIST's training-set pixel mean and std (of x / 255).
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530


@dataclass
class VisionSettings:
    # A tiny ViT (patch 4: 49 patches; 2 layers of width 64, ~0.1M parameters) so that MAE, the probes and the
    # fine-tunes of two seeds fit in minutes on 2 cores; the comparison, not the absolute accuracy, is the point.
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 4
    pooling: str = "mean"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    mae_steps: int = 800
    mae_batch: int = 256
    mae_lr: float = 1.5e-3
    finetune_steps: int = 300
    finetune_batch: int = 128
    finetune_lr: float = 3e-3
    lp_ft: bool = True              # fine-tunes start from the linear probe's head
    sup_steps: int = 400            # supervised pretraining on classes 0-4
    fractions: tuple = (0.01, 0.1, 1.0)
    finetune_fractions: tuple = (0.01, 0.1, 1.0)
    train_limit: int | None = None  # use only the first N training images (quick runs)
    test_limit: int | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)


FULL = VisionSettings()
# --quick: linear probes only. Its 60-step fine-tunes were measured (2 seeds) within the seed spread of scratch,
# -1.1 to +1.8 points, while the probes favoured pretraining by 10-15 points; ~100 s for two seeds on 2 cores.
QUICK = VisionSettings(mae_steps=150, finetune_steps=60, sup_steps=80, fractions=(0.01, 1.0),
                       finetune_fractions=(), train_limit=20000, test_limit=2000)


# ---- data ------------------------------------------------------------------------------------------------------------

def load_data(settings: VisionSettings, root: str | None = None):
    """(x_train (N, 1, 28, 28) float32 normalised, y_train (N,), x_test, y_test) or a FileNotFoundError."""
    from ..data.images import load_fashion_mnist

    xs = []
    for split, limit in (("train", settings.train_limit), ("test", settings.test_limit)):
        images, labels = load_fashion_mnist(split, root=root)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        x = (torch.from_numpy(images.astype(np.float32) / 255.0) - PIXEL_MEAN) / PIXEL_STD
        xs += [x[:, None], torch.from_numpy(labels)]
    return tuple(xs)


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of `fraction` of each class (at least one per class), drawn with `seed`: both contenders of a
    comparison see the same labelled images."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).reshape(-1)
        k = max(1, int(round(fraction * idx.numel())))
        picks.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    return torch.sort(torch.cat(picks)).values


# ---- models and training ---------------------------------------------------------------------------------------------

def vit_config(settings: VisionSettings, num_labels: int = 10):
    from ..models.vit import ViTConfig

    return ViTConfig(patch_size=settings.patch, hidden_size=settings.hidden, num_hidden_layers=settings.layers,
                     num_attention_heads=settings.heads, intermediate_size=4 * settings.hidden,
                     decoder_hidden_size=settings.hidden, decoder_num_hidden_layers=1,
                     decoder_num_attention_heads=settings.heads, decoder_intermediate_size=4 * settings.hidden,
                     mask_ratio=settings.mask_ratio, norm_pix_loss=settings.norm_pix_loss, pooling=settings.pooling,
                     num_labels=num_labels)


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0 (MAE's and most ViT recipes')."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _optimizer(model, lr: float, steps: int, weight_decay: float = 0.05, betas=(0.9, 0.999)):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "position" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, steps, max(1, steps // 20)))
    return opt, sched


def pretrain_mae(x_train: torch.Tensor, settings: VisionSettings, seed: int, progress=None):
    """MAE on the images only (labels never read). Returns (the pretrained ViTForMaskedImageModeling, losses)."""
    from ..models.vit import ViTForMaskedImageModeling

    torch.manual_seed(seed)
    model = ViTForMaskedImageModeling(vit_config(settings))
    opt, sched = _optimizer(model, settings.mae_lr, settings.mae_steps, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(seed)
    n, losses, order, pos, epoch = x_train.shape[0], [], None, 0, 0
    model.train()
    for step in range(settings.mae_steps):
        if order is None or pos + settings.mae_batch > n:
            order, pos, epoch = torch.randperm(n, generator=g), 0, epoch + 1
        idx = order[pos:pos + settings.mae_batch]
        pos += settings.mae_batch
        # Masks keyed by (seed, epoch) and the dataset index: a new mask for every image each epoch, reproducible.
        out = model(x_train[idx], image_ids=idx, seed=seed * 1_000_003 + epoch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
        if progress:
            progress(step, losses[-1])
    return model, losses


def train_classifier(model, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, lr: float, seed: int):
    """Fine-tune every parameter with cross-entropy on (x, y) for `steps` steps (epochs cycle over the subset)."""
    opt, sched = _optimizer(model, lr, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    n, order, pos = x.shape[0], None, 0
    for _ in range(steps):
        if order is None or pos + min(batch, n) > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        loss = model(x[idx], labels=y[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    hits = 0
    for i in range(0, x.shape[0], batch):
        hits += int((model(x[i:i + batch]).logits.argmax(-1) == y[i:i + batch]).sum())
    return hits / max(1, x.shape[0])


@torch.no_grad()
def features(encoder, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Pooled encoder features (N, H), float32, no grad, in eval mode."""
    encoder.eval()
    return torch.cat([encoder(x[i:i + batch]).pooler_output.float() for i in range(0, x.shape[0], batch)])


def fit_logistic(f_train: torch.Tensor, y_train: torch.Tensor, num_classes: int, weight_decay: float = 1e-4):
    """Multinomial logistic regression on standardised features (full-batch L-BFGS, float64). Returns (weight
    (F, C), bias (C,)) on the raw features: logits = f @ weight + bias."""
    mean, std = f_train.double().mean(0), f_train.double().std(0).clamp(min=1e-6)
    a = (f_train.double() - mean) / std
    w = torch.zeros(a.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], lr=1.0, max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, y_train) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        weight = w / std[:, None]                     # folds the standardisation into the weights
        return weight, bias - (mean[None] @ weight)[0]


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 num_classes: int) -> float:
    """fit_logistic on the training features: accuracy on the test features."""
    weight, bias = fit_logistic(f_train, y_train, num_classes)
    return float(((f_test.double() @ weight + bias).argmax(-1) == y_test).double().mean())


def _classifier_from(encoder_state, settings: VisionSettings, num_labels: int, seed: int):
    """A fresh ViTForImageClassification (seeded), with the pretrained encoder's weights when given."""
    from ..models.vit import ViTForImageClassification

    torch.manual_seed(seed + 7)
    model = ViTForImageClassification(vit_config(settings, num_labels))
    if encoder_state is not None:
        model.vit.load_state_dict(encoder_state)
    return model


def compare(encoder_state, data, settings: VisionSettings, seed: int, num_labels: int, tag: str, log) -> dict:
    """Linear probe and fine-tune at each label fraction, from `encoder_state` and from scratch (same seed)."""
    x_tr, y_tr, x_te, y_te = data
    out = {}
    inits = {"pretrained": encoder_state, "scratch": None}
    feats = {}
    for name, state in inits.items() if settings.fractions else ():
        enc = _classifier_from(state, settings, num_labels, seed).vit
        feats[name] = (features(enc, x_tr), features(enc, x_te))
    for frac in settings.fractions:
        sub = stratified_subset(y_tr, frac, seed)
        for name in inits:
            f_tr, f_te = feats[name]
            acc = linear_probe(f_tr[sub], y_tr[sub], f_te, y_te, num_labels)
            out[f"{tag}/probe/{frac:g}/{name}"] = acc
            log(f"  {tag} seed {seed} linear probe {frac:>5.0%} labels, {name:10s}: {acc:.2%}")
    for frac in settings.finetune_fractions:
        sub = stratified_subset(y_tr, frac, seed)
        for name, state in inits.items():
            model = _classifier_from(state, settings, num_labels, seed)
            if settings.lp_ft:
                # LP-FT (Kumar et al. 2022): start the head at the linear probe's solution, so the first steps'
                # large gradients from a random head do not wreck the pretrained features (with 1% of the labels
                # a plain fine-tune ended below its own linear probe). The same recipe runs for scratch.
                weight, bias = fit_logistic(features(model.vit, x_tr[sub]), y_tr[sub], num_labels)
                with torch.no_grad():
                    model.classifier.weight.copy_(weight.T.float())
                    model.classifier.bias.copy_(bias.float())
            train_classifier(model, x_tr[sub], y_tr[sub], settings.finetune_steps, settings.finetune_batch,
                             settings.finetune_lr, seed)
            acc = accuracy(model, x_te, y_te)
            out[f"{tag}/finetune/{frac:g}/{name}"] = acc
            log(f"  {tag} seed {seed} fine-tune    {frac:>5.0%} labels, {name:10s}: {acc:.2%}")
    return out


def supervised_transfer(data, settings: VisionSettings, seed: int, log) -> dict:
    """Pretrain with labels on classes 0-4, transfer the encoder to classes 5-9 (relabelled 0-4)."""
    x_tr, y_tr, x_te, y_te = data
    src, dst_tr, dst_te = y_tr < 5, y_tr >= 5, y_te >= 5
    model = _classifier_from(None, settings, 5, seed + 100)
    every = torch.nonzero(src).reshape(-1)
    train_classifier(model, x_tr[every], y_tr[every], settings.sup_steps, settings.finetune_batch,
                     settings.finetune_lr, seed)
    src_te = y_te < 5
    log(f"  supervised pretraining on classes 0-4, seed {seed}: {accuracy(model, x_te[src_te], y_te[src_te]):.2%} "
        "on their test images")
    target = (x_tr[dst_tr], y_tr[dst_tr] - 5, x_te[dst_te], y_te[dst_te] - 5)
    return compare(model.vit.state_dict(), target, settings, seed, 5, "classes 5-9", log)


# ---- the table -------------------------------------------------------------------------------------------------------

def summarize(results: list[dict]) -> list[dict]:
    """Per comparison and setting: mean and std over seeds for pretrained and scratch, and the gap."""
    keys = sorted({k.rsplit("/", 1)[0] for r in results for k in r})
    rows = []
    for key in keys:
        pre = [r[f"{key}/pretrained"] for r in results if f"{key}/pretrained" in r]
        scr = [r[f"{key}/scratch"] for r in results if f"{key}/scratch" in r]
        if not pre or not scr:
            continue
        task, how, frac = key.split("/")
        gaps = [a - b for a, b in zip(pre, scr)]
        rows.append({"task": task, "method": how, "labels": float(frac), "seeds": len(pre),
                     "pretrained_mean": float(np.mean(pre)), "pretrained_std": float(np.std(pre)),
                     "scratch_mean": float(np.mean(scr)), "scratch_std": float(np.std(scr)),
                     "gap_mean": float(np.mean(gaps)), "gap_min": float(np.min(gaps))})
    order = {"MAE": 0, "classes 5-9": 1}
    rows.sort(key=lambda r: (order.get(r["task"], 9), r["method"], r["labels"]))
    return rows


def format_rows(rows: list[dict]) -> str:
    head = "| pretraining -> task | method | labels | seeds | pretrained | scratch | gap (min over seeds) |\n" \
           "|---|---|---|---|---|---|---|\n"
    task_name = {"MAE": "MAE on 60k unlabelled -> 10 classes", "classes 5-9": "supervised 0-4 -> classes 5-9"}
    lines = [f"| {task_name.get(r['task'], r['task'])} | {r['method']} | {r['labels']:.0%} | {r['seeds']} | "
             f"{r['pretrained_mean']:.1%} ± {r['pretrained_std']:.1%} | {r['scratch_mean']:.1%} ± "
             f"{r['scratch_std']:.1%} | {r['gap_mean']:+.1%} ({r['gap_min']:+.1%}) |" for r in rows]
    return head + "\n".join(lines)


def _mae_key(settings: VisionSettings, seed: int) -> dict:
    """What an MAE checkpoint depends on: a cached one is reused only when all of it matches."""
    names = ("hidden", "layers", "heads", "patch", "pooling", "mask_ratio", "norm_pix_loss", "mae_steps", "mae_batch",
             "mae_lr", "train_limit")
    return {"seed": seed, **{n: getattr(settings, n) for n in names}}


def _mae_encoder(x_train, settings: VisionSettings, seed: int, out_dir: str, log) -> dict:
    """The MAE-pretrained encoder's state dict: from out_dir/mae-seed<seed>/ when a run with the same settings saved
    it there (so a long comparison can be split into runs), else pretrained now and saved."""
    from ..models.vit import ViTForMaskedImageModeling

    folder = os.path.join(out_dir, f"mae-seed{seed}")
    key_path = os.path.join(folder, "run.json")
    key = _mae_key(settings, seed)
    if os.path.exists(key_path):
        with open(key_path) as fh:
            if json.load(fh) == key:
                log(f"  MAE seed {seed}: reusing the checkpoint in {folder}")
                return ViTForMaskedImageModeling.from_pretrained(folder).vit.state_dict()
    t = time.time()
    mae, losses = pretrain_mae(x_train, settings, seed)
    log(f"  MAE seed {seed}: {settings.mae_steps} steps, loss {np.mean(losses[:20]):.3f} -> "
        f"{np.mean(losses[-20:]):.3f} ({time.time() - t:.0f} s)")
    if out_dir:
        mae.save_pretrained(folder)
        atomic_write(key_path, lambda fh: json.dump(key, fh), text=True)
    return mae.vit.state_dict()


def run(quick: bool, out_dir: str, seeds=(0, 1), settings: VisionSettings | None = None, root: str | None = None,
        parts=("mae", "supervised"), log=print) -> dict:
    """The vision comparison. Returns {"skipped": reason} when the data is absent, else {"rows": table rows (see
    summarize), "results": per-seed accuracies, "settings", "seconds", "markdown"}. Writes vision.json into
    out_dir, merged with the one an earlier run left there (same seed: this run's numbers win), so a comparison
    can be split into runs. `log` receives progress lines (the demo's printer); nothing else is printed."""
    settings = settings or (QUICK if quick else FULL)
    t0 = time.time()
    try:
        data = load_data(settings, root)
    except FileNotFoundError as exc:
        log(f"vision: skipped ({exc})")
        return {"skipped": str(exc)}
    if settings.threads:
        torch.set_num_threads(settings.threads)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for seed in seeds:
        res = {}
        if "mae" in parts:
            res.update(compare(_mae_encoder(data[0], settings, seed, out_dir, log), data, settings, seed, 10, "MAE",
                               log))
        if "supervised" in parts:
            res.update(supervised_transfer(data, settings, seed, log))
        results.append(res)
    # A run split into parts (the checkpoint reused from out_dir) adds to the earlier parts' results, seed by seed.
    path = os.path.join(out_dir, "vision.json")
    merged = {s: r for s, r in zip(seeds, results)}
    if os.path.exists(path):
        with open(path) as fh:
            earlier = json.load(fh)
        for s, r in zip(earlier.get("seeds", []), earlier.get("results", [])):
            merged[s] = {**r, **merged.get(s, {})}
    seeds_all = sorted(merged)
    results = [merged[s] for s in seeds_all]
    rows = summarize(results)
    report = {"rows": rows, "results": results, "settings": asdict(settings), "seeds": seeds_all,
              "seconds": time.time() - t0, "markdown": format_rows(rows)}
    atomic_write(path, lambda fh: json.dump(report, fh, indent=2), text=True)
    return report
