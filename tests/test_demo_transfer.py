"""pyfast.demo.transfer and the demo's transfer tasks: stratified label subsets, the two derived datasets, the
statistics behind the table, and a tiny pretrained-vs-scratch run end to end (its numbers must be real
accuracies, not that pretrained wins: a few steps of a tiny model is too noisy for that)."""
import pytest
import torch
from torch import nn

from pyfast.demo import transfer
from pyfast.demo.corpus import (load_books, proper_noun_dataset, replaced_word_dataset, split_paragraphs,
                                 word_order_dataset)


def test_label_subset_is_stratified_seeded_and_at_least_one_per_class():
    labels = [0] * 90 + [1] * 10
    a = transfer.label_subset(labels, 0.1, seed=3, num_labels=2)
    assert a == transfer.label_subset(labels, 0.1, seed=3, num_labels=2)
    assert a != transfer.label_subset(labels, 0.1, seed=4, num_labels=2)
    assert sum(labels[i] == 0 for i in a) == 9 and sum(labels[i] == 1 for i in a) == 1
    assert len(transfer.label_subset(labels, 0.001, seed=0, num_labels=2)) == 2
    assert len(transfer.label_subset(labels, 1.0, seed=0, num_labels=2)) == 100
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 0"):
        transfer.label_subset(labels, 0, seed=0, num_labels=2)
    with pytest.raises(ValueError, match="class 2 has no rows"):
        transfer.label_subset(labels, 0.5, seed=0, num_labels=3)


def test_word_order_dataset_keeps_the_words_and_balances_labels():
    train, _ = split_paragraphs(load_books())
    paragraphs = [p for p, _ in train]
    rows = word_order_dataset(paragraphs, seed=0)
    assert rows == word_order_dataset(paragraphs, seed=0)
    assert 0.45 < sum(y for _, y in rows) / len(rows) < 0.55
    originals = iter(p.split()[:40] for p in paragraphs if len(p.split()) >= 8)
    for text, label in rows[:200]:
        words = next(originals)
        assert sorted(text.split()) == sorted(words)
        assert (text.split() == words) == (label == 0) or len(set(words)) == 1 or label == 1


@pytest.mark.parametrize("share", [0.15, 0.01])
def test_replaced_word_dataset_changes_exactly_the_stated_words_with_corpus_words(share):
    train, _ = split_paragraphs(load_books())
    paragraphs = [p for p, _ in train]
    rows = replaced_word_dataset(paragraphs, seed=0, share=share)
    assert rows == replaced_word_dataset(paragraphs, seed=0, share=share)
    assert rows != replaced_word_dataset(paragraphs, seed=1, share=share)
    assert 0.45 < sum(y for _, y in rows) / len(rows) < 0.55
    corpus_words = {w for p in paragraphs for w in p.split()}
    originals = [p.split()[:40] for p in paragraphs if len(p.split()) >= 8]
    assert len(originals) == len(rows)
    for (text, label), words in zip(rows, originals):
        got = text.split()
        assert len(got) == len(words)
        changed = [i for i, (a, b) in enumerate(zip(got, words)) if a != b]
        assert len(changed) == (max(1, round(share * len(words))) if label else 0), (text, words)
        assert all(got[i] in corpus_words for i in changed)


def test_proper_noun_dataset_labels_names_from_capitalisation():
    train, _ = split_paragraphs(load_books())
    paragraphs = [p for p, _ in train]
    vocab = {w for p in paragraphs for w in p.lower().split()} | {"elinor", "darcy", "letter", "morning"}
    rows_train, rows_test = proper_noun_dataset(paragraphs, vocab, seed=0)
    labels = dict(rows_train + rows_test)
    assert labels.get("elinor") == 1 and labels.get("darcy") == 1
    assert labels.get("letter", 0) == 0 and labels.get("morning", 0) == 0
    assert not {w for w, _ in rows_train} & {w for w, _ in rows_test}
    n_names = sum(labels.values())
    assert n_names == len(labels) - n_names  # common words subsampled to as many as names


def _comparison(pre, scratch):
    c = transfer.Comparison("m", "p", "s", [0.1], labels_used={0.1: 5}, acc={"p": {0.1: pre}, "s": {0.1: scratch}})
    return c


def test_comparison_statistics_and_clear_win():
    c = _comparison([0.8, 0.9, 1.0], [0.5, 0.6, 0.7])
    assert c.stats("p", 0.1) == pytest.approx((0.9, 0.1))
    assert c.gain(0.1) == pytest.approx(0.3) and c.clear_win(0.1)
    assert not _comparison([0.6, 0.9], [0.5, 0.8]).clear_win(0.1)  # gain 0.1 < sd 0.21
    row = transfer.table_rows([c])[0]
    assert row == ("m", "5 (10%)", "90.0% +- 10.0%", "60.0% +- 10.0%", "+30.0", "yes")


def test_compare_runs_both_sides_on_the_same_subsets_and_reports_real_accuracies():
    # Tokens 2/3 decide the label; a "pretrained" embedding that already separates them vs a random one.
    gen = torch.Generator().manual_seed(0)
    ids = [[2 + int(y)] + torch.randint(4, 20, (5,), generator=gen).tolist() for y in range(2) for _ in range(30)]
    labels = torch.tensor([y for y in range(2) for _ in range(30)])
    data = transfer.Encoded(ids, labels, pad_id=0)

    def build(separated):
        def make(seed):
            emb = nn.Embedding(20, 4, padding_idx=0)
            if separated:
                with torch.no_grad():
                    emb.weight.zero_()
                    emb.weight[2, 0], emb.weight[3, 0] = -3.0, 3.0
            return transfer.BagOfWordsClassifier(emb, 2, dropout=0.0), {"head"}
        return make

    c = transfer.compare("toy", transfer.Side("p", build(True), 0.0, 0.1), transfer.Side("s", build(False), 0.0, 0.1),
                         data, data, num_labels=2, fractions=[0.1, 1.0], seeds=[0, 1], steps=lambda n: 20,
                         batch_size=8, max_len=8)
    assert c.labels_used == {0.1: 6, 1.0: 60}
    for side in ("p", "s"):
        for f in (0.1, 1.0):
            assert len(c.acc[side][f]) == 2 and all(0.0 <= a <= 1.0 for a in c.acc[side][f])
    assert c.stats("p", 1.0)[0] == 1.0  # the separated embedding plus a trained head gets every row right
