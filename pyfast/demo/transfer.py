"""Does pre-training pay? Pretrained vs the same architecture from scratch, fine-tuned on a few labels.

For each contender pair (word2vec embeddings vs random ones in a bag-of-words classifier; an MLM-pretrained BERT
encoder vs a fresh one; an LM-pretrained GPT decoder with a classification head vs a fresh one) and each label
fraction, every seed draws its own stratified label subset, and both sides of the pair fine-tune on that same
subset with the same steps and batches; accuracy is measured on held-out rows neither side trained on. The table
gives mean +- standard deviation over seeds; the plot is accuracy against the number of labels.

Sizes are the caller's (the demo's are picked for 2 CPU cores); nothing here tunes itself on the test rows.
"""
from __future__ import annotations

import os
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from pyfast.models import BertForSequenceClassification, GPTModel
from pyfast.models.training import cosine_lr, pad_batch, set_seed
from pyfast.nn import embedding_from_word2vec, mean_pooling

from .corpus import WORD_RE


# ---- classifiers ---------------------------------------------------------------------------------------------
class BagOfWordsClassifier(nn.Module):
    """Mean of word embeddings (padding masked out) -> dropout -> Linear: the smallest model whose only knowledge
    of language is its embedding table, so initialising that table from word2vec is the whole difference."""

    def __init__(self, embedding: nn.Embedding, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embedding.embedding_dim, num_labels)

    def forward(self, input_ids, attention_mask=None):  # (B, L) -> (B, num_labels)
        pooled = mean_pooling(self.embedding(input_ids), attention_mask)  # (B, D)
        return self.head(self.dropout(pooled))


class GPTClassifier(nn.Module):
    """A GPT decoder (GPTModel) -> mean of its final hidden states over real tokens -> dropout -> Linear. Mean
    rather than last-token pooling: with right padding the last real token sits at a different place per row, and
    a decoder trained for a few hundred steps spreads what it knows over every position."""

    def __init__(self, transformer: GPTModel, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.transformer = transformer
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(transformer.config.n_embd, num_labels)

    def forward(self, input_ids, attention_mask=None):  # (B, L) -> (B, num_labels)
        hidden = self.transformer(input_ids, attention_mask).last_hidden_state  # (B, L, E)
        return self.head(self.dropout(mean_pooling(hidden, attention_mask)))


class _BertLogits(nn.Module):
    """BertForSequenceClassification with forward -> logits, so every contender has the same call."""

    def __init__(self, model: BertForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids, attention_mask=attention_mask).logits


# ---- what a comparison is made of ----------------------------------------------------------------------------
@dataclass
class Encoded:
    """A labelled split as token ids: ids (list of id lists), labels (N,) int64, pad_id."""
    ids: list
    labels: torch.Tensor
    pad_id: int


@dataclass
class Side:
    """One contender: build(seed) -> (model whose forward(ids, mask) gives logits, names of its new head
    parameters). Head parameters train at head_lr, the rest at lr."""
    name: str
    build: Callable[[int], tuple[nn.Module, set]]
    lr: float
    head_lr: float


@dataclass
class Comparison:
    """Accuracies of a pretrained/scratch pair: acc[side][fraction] = one accuracy per seed."""
    method: str
    pretrained: str
    scratch: str
    fractions: list
    labels_used: dict = field(default_factory=dict)       # fraction -> number of labelled rows per seed
    acc: dict = field(default_factory=dict)               # side name -> fraction -> [accuracy per seed]
    seconds: float = 0.0

    def stats(self, side: str, fraction: float) -> tuple[float, float]:
        """(mean, standard deviation over seeds; 0 for one seed)."""
        values = self.acc[side][fraction]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    def gain(self, fraction: float) -> float:
        return self.stats(self.pretrained, fraction)[0] - self.stats(self.scratch, fraction)[0]

    def clear_win(self, fraction: float) -> bool:
        """The pretrained mean beats scratch's by more than the larger of the two spreads across seeds."""
        spread = max(self.stats(self.pretrained, fraction)[1], self.stats(self.scratch, fraction)[1])
        return self.gain(fraction) > spread


def label_subset(labels, fraction: float, seed: int, num_labels: int) -> list[int]:
    """Row indices of a stratified random `fraction` of the labelled rows (at least one per class), fixed by seed."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label_subset: fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_labels):
        rows = np.flatnonzero(labels == c)
        if rows.size == 0:
            raise ValueError(f"label_subset: class {c} has no rows")
        take = max(1, int(round(fraction * rows.size)))
        chosen.extend(rng.choice(rows, size=take, replace=False).tolist())
    return sorted(chosen)


# ---- training one side on one subset -------------------------------------------------------------------------
def _param_groups(model: nn.Module, head_names: set, lr: float, head_lr: float, weight_decay: float = 0.01):
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = any(name == h or name.startswith(h + ".") for h in head_names)
        key = ("head" if is_head else "body", p.dim() >= 2)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "peak_lr": head_lr if part == "head" else lr,
             "weight_decay": weight_decay if decays else 0.0} for (part, decays), ps in groups.items()]


def finetune_and_score(model: nn.Module, head_names: set, train: Encoded, rows: list[int], test: Encoded, *,
                       steps: int, batch_size: int, lr: float, head_lr: float, max_len: int, seed: int) -> float:
    """AdamW with warmup + cosine decay on train rows `rows` -> held-out accuracy on every test row."""
    optimizer = torch.optim.AdamW(_param_groups(model, head_names, lr, head_lr), betas=(0.9, 0.98), eps=1e-6)
    gen = torch.Generator().manual_seed(seed)
    rows_t = torch.tensor(rows)
    batch_size = min(batch_size, len(rows))
    order, at = rows_t[torch.randperm(len(rows), generator=gen)], 0
    model.train()
    for step in range(steps):
        if at + batch_size > len(order):  # a fresh permutation per epoch: every labelled row seen equally often
            order, at = rows_t[torch.randperm(len(rows), generator=gen)], 0
        idx = order[at:at + batch_size].tolist()
        at += batch_size
        input_ids, attention_mask = pad_batch([train.ids[i] for i in idx], train.pad_id, max_len)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, group["peak_lr"], warmup=max(1, steps // 10))
        logits = model(input_ids, attention_mask)
        loss = nn.functional.cross_entropy(logits.float(), train.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return accuracy(model, test, max_len)


@torch.no_grad()
def accuracy(model: nn.Module, data: Encoded, max_len: int, batch_size: int = 128) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(data.ids), batch_size):
        input_ids, attention_mask = pad_batch(data.ids[i:i + batch_size], data.pad_id, max_len)
        correct += int((model(input_ids, attention_mask).argmax(-1) == data.labels[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(data.ids))


def compare(method: str, pretrained: Side, scratch: Side, train: Encoded, test: Encoded, *, num_labels: int,
            fractions, seeds, steps: Callable[[int], int], batch_size: int, max_len: int,
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Fine-tune both sides on the same label subset for every (fraction, seed). steps(n_labels) -> steps."""
    import time

    t0 = time.perf_counter()
    result = Comparison(method, pretrained.name, scratch.name, list(fractions),
                        acc={pretrained.name: {}, scratch.name: {}})
    for fraction in fractions:
        for seed in seeds:
            rows = label_subset(train.labels.numpy(), fraction, seed, num_labels)
            result.labels_used[fraction] = len(rows)
            for side in (pretrained, scratch):
                set_seed(seed)  # the new head (and, from scratch, the whole model) starts from this seed
                model, head_names = side.build(seed)
                acc = finetune_and_score(model, head_names, train, rows, test, steps=steps(len(rows)),
                                         batch_size=batch_size, lr=side.lr, head_lr=side.head_lr, max_len=max_len,
                                         seed=seed)
                result.acc[side.name].setdefault(fraction, []).append(acc)
        if progress is not None:
            p, s = result.stats(pretrained.name, fraction), result.stats(scratch.name, fraction)
            progress(f"{method}, {result.labels_used[fraction]} labels: {pretrained.name} {p[0]:.1%} +- {p[1]:.1%}, "
                     f"{scratch.name} {s[0]:.1%} +- {s[1]:.1%}")
    result.seconds = time.perf_counter() - t0
    return result


# ---- the three pairs -----------------------------------------------------------------------------------------
def word_vocab(w2v) -> list[str]:
    """[PAD], [UNK], then word2vec's words in its own order."""
    return ["[PAD]", "[UNK]"] + list(w2v.wv.index_to_key)


def encode_words(rows, vocab: list[str]) -> Encoded:
    """(text, label) rows -> word ids with the demo's word2vec tokenisation (lower-cased words)."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = [[index.get(w, 1) for w in WORD_RE.findall(text.lower())] or [1] for text, _ in rows]
    return Encoded(ids, torch.tensor([y for _, y in rows]), pad_id=0)


def encode_wordpiece(rows, tokenizer) -> Encoded:
    return Encoded(tokenizer.encode_batch([t for t, _ in rows]), torch.tensor([y for _, y in rows]),
                   pad_id=tokenizer.pad_token_id)


def word2vec_sides(w2v, vocab: list[str], num_labels: int, lr: float, head_lr: float) -> tuple[Side, Side]:
    """Embedding table from word2vec vs random rows of the same scale (N(0, std of the word vectors)), so only
    what the vectors encode differs, not how large they start."""
    std = float(np.asarray(w2v.wv.vectors).std())

    def pretrained(seed):
        embedding, _ = embedding_from_word2vec(w2v, vocab, freeze=False, padding_idx=0, seed=seed)
        return BagOfWordsClassifier(embedding, num_labels), {"head"}

    def scratch(seed):
        embedding = nn.Embedding(len(vocab), w2v.wv.vectors.shape[1], padding_idx=0)
        with torch.no_grad():
            embedding.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
            embedding.weight[0].zero_()
        return BagOfWordsClassifier(embedding, num_labels), {"head"}

    return Side("word2vec init", pretrained, lr, head_lr), Side("random init", scratch, lr, head_lr)


def bert_sides(checkpoint: str, num_labels: int, lr: float, head_lr: float, scratch_lr: float,
               pooling: str = "mean", dropout: float = 0.1) -> tuple[Side, Side]:
    """BertForSequenceClassification from the MLM checkpoint vs the same config freshly initialised. The pooler
    and classifier are new on both sides and train at head_lr; the scratch encoder at scratch_lr."""
    from pyfast.models import BertConfig

    config = BertConfig.load(os.path.join(checkpoint, "config.json"), num_labels=num_labels,
                             classifier_pooling=pooling, classifier_dropout=dropout)
    head = {"model.bert.pooler", "model.classifier"}

    def pretrained(seed):
        with warnings.catch_warnings():  # the pooler and classifier are meant to be new
            warnings.simplefilter("ignore")
            model = BertForSequenceClassification.from_pretrained(checkpoint, num_labels=num_labels,
                                                                  classifier_pooling=pooling,
                                                                  classifier_dropout=dropout)
        return _BertLogits(model), head

    def scratch(seed):
        return _BertLogits(BertForSequenceClassification(config)), head

    return (Side("MLM-pretrained", pretrained, lr, head_lr), Side("from scratch", scratch, scratch_lr, head_lr))


def gpt_sides(checkpoint: str, num_labels: int, lr: float, head_lr: float, scratch_lr: float,
              dropout: float = 0.1) -> tuple[Side, Side]:
    """GPTClassifier over the LM-pretrained decoder vs over a fresh GPTModel of the same config."""
    from pyfast.models import GPTConfig

    config = GPTConfig.load(os.path.join(checkpoint, "config.json"))

    def pretrained(seed):
        with warnings.catch_warnings():  # the LM head's weight is the tied embedding: not needed here
            warnings.simplefilter("ignore")
            decoder = GPTModel.from_pretrained(checkpoint)
        return GPTClassifier(decoder, num_labels, dropout), {"head"}

    def scratch(seed):
        return GPTClassifier(GPTModel(config), num_labels, dropout), {"head"}

    return Side("LM-pretrained", pretrained, lr, head_lr), Side("from scratch", scratch, scratch_lr, head_lr)


# ---- reporting -----------------------------------------------------------------------------------------------
def table_rows(comparisons: list[Comparison]) -> list[tuple]:
    """(method, labels, pretrained 'mean +- sd', scratch 'mean +- sd', gain in points, 'yes'/'no')."""
    out = []
    for c in comparisons:
        for f in c.fractions:
            (pm, ps), (sm, ss) = c.stats(c.pretrained, f), c.stats(c.scratch, f)
            out.append((c.method, f"{c.labels_used[f]} ({f:.0%})", f"{pm:.1%} +- {ps:.1%}", f"{sm:.1%} +- {ss:.1%}",
                        f"{100 * (pm - sm):+.1f}", "yes" if c.clear_win(f) else "no"))
    return out


def plot_curves(comparisons: list[Comparison], path: str, title: str) -> bool:
    """Held-out accuracy vs number of labels (log x), one panel per method, mean with a +-1 sd band. False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(comparisons), figsize=(4.2 * len(comparisons), 3.4), squeeze=False)
    for ax, c in zip(axes[0], comparisons):
        xs = [c.labels_used[f] for f in c.fractions]
        for side, colour in ((c.pretrained, "#173"), (c.scratch, "#a43")):
            mean = np.array([c.stats(side, f)[0] for f in c.fractions])
            sd = np.array([c.stats(side, f)[1] for f in c.fractions])
            ax.plot(xs, mean, marker="o", color=colour, label=side)
            ax.fill_between(xs, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("labelled paragraphs")
        ax.set_ylabel("held-out accuracy")
        ax.set_title(c.method, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    from pyfast._io import replace

    replace(tmp, path)
    return True

