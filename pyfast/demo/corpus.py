"""The demo corpus (three Austen novels, public domain; see SOURCE.md) and the labelled sets the examples use.

Paragraphs are blank-line separated blocks with their line breaks joined. `split_paragraphs` keeps the last
`held_out` fraction of every book apart, so a model pretrained on the rest is evaluated on text it never saw.
"""
from __future__ import annotations

import gzip
import os
import random
import re

CORPUS_PATH = os.path.join(os.path.dirname(__file__), "austen.txt.gz")
_BOOK_RE = re.compile(r"^#### BOOK: (.+)$", re.M)
WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def load_books(path: str = CORPUS_PATH) -> dict[str, list[str]]:
    """title -> paragraphs (each one string, internal line breaks replaced by spaces)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    parts = _BOOK_RE.split(text)  # ['', title1, body1, title2, body2, ...]
    books = {}
    for title, body in zip(parts[1::2], parts[2::2]):
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
        books[title] = [p for p in paragraphs if len(p.split()) >= 3]
    if not books:
        raise ValueError(f"{path}: no '#### BOOK:' sections found")
    return books


def split_paragraphs(books: dict[str, list[str]], held_out: float = 0.1):
    """-> (train, test): lists of (paragraph, book index); the test part is each book's last `held_out` share."""
    train, test = [], []
    for label, paragraphs in enumerate(books.values()):
        cut = int(len(paragraphs) * (1 - held_out))
        train += [(p, label) for p in paragraphs[:cut]]
        test += [(p, label) for p in paragraphs[cut:]]
    return train, test


def word_sentences(paragraphs: list[str]) -> list[list[str]]:
    """Lower-cased word lists (one per paragraph) for word2vec."""
    return [WORD_RE.findall(p.lower()) for p in paragraphs]


def polarity_dataset(seed: int = 0, test_fraction: float = 0.2):
    """gensim's test copy of Pang & Lee's sentence polarity data (200 labelled movie-review sentences), shuffled
    and split -> (train, test) lists of (sentence, 0=neg/1=pos), or None when gensim is not installed."""
    try:
        import gensim
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "pang_lee_polarity.cor")
    if not os.path.exists(path):
        return None
    rows = []
    with open(path, encoding="latin-1") as fh:  # the file is Windows-1252 text (0x97 dashes), not UTF-8
        for line in fh:
            label, _, sentence = line.strip().partition(" ")
            if label in ("__label__neg", "__label__pos") and sentence:
                rows.append((sentence, int(label == "__label__pos")))
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - test_fraction))
    return rows[:cut], rows[cut:]


_CAP_WORD_RE = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_START = set(".!?\"'\u201c\u2018(-_:;")


def word_order_dataset(paragraphs: list[str], seed: int = 0, min_words: int = 8, max_words: int = 40):
    """Real or shuffled? Each paragraph with at least `min_words` words, cut to its first `max_words`, is kept as
    written (label 0) or has its words shuffled (label 1), a fair coin per paragraph fixed by `seed`. The words
    and their counts are the same either way, so only word order tells the classes apart: what a language model
    learns from unlabelled text and a classifier cannot learn from a few labels. -> list of (text, label)."""
    return _coin_flip_rows(paragraphs, seed, min_words, max_words, lambda words, rng: rng.shuffle(words))


def _coin_flip_rows(paragraphs: list[str], seed: int, min_words: int, max_words: int, corrupt):
    """The two word-level tasks' rows: each paragraph with >= `min_words` words, cut to its first `max_words`, and a
    fair coin per paragraph (one Random(seed) for the whole pass); heads: `corrupt(words, rng)` changes the word list
    in place and the row is labelled 1."""
    rng = random.Random(seed)
    rows = []
    for p in paragraphs:
        words = p.split()
        if len(words) < min_words:
            continue
        words = words[:max_words]
        label = rng.random() < 0.5
        if label:
            corrupt(words, rng)
        rows.append((" ".join(words), int(label)))
    return rows


def replaced_word_dataset(paragraphs: list[str], seed: int = 0, min_words: int = 8, max_words: int = 40,
                          share: float = 0.15):
    """Were words replaced? Each paragraph with at least `min_words` words, cut to its first `max_words`, is kept as
    written (label 0) or has round(`share` * its length) words (at least one) at random places replaced by words
    drawn from the corpus's own word distribution (label 1), a fair coin per paragraph fixed by `seed`. Drawing by
    frequency means the inserted words are as common as the ones they replace ("the", "of", "her" most often), so
    word counts barely tell the classes apart; what does is whether each word fits its context, which is what a
    masked LM is trained to judge (ELECTRA's replaced-token detection, per paragraph). -> list of (text, label)."""
    pool = [w for p in paragraphs for w in p.split()]  # every word token: uniform draws follow word frequency

    def replace(words, rng):
        for i in rng.sample(range(len(words)), max(1, round(share * len(words)))):
            new = rng.choice(pool)
            while new == words[i]:
                new = rng.choice(pool)
            words[i] = new

    return _coin_flip_rows(paragraphs, seed, min_words, max_words, replace)


def proper_noun_dataset(paragraphs: list[str], vocabulary, seed: int = 0, min_count: int = 3,
                        test_fraction: float = 0.2):
    """Names or common words? Labels read from the capitalisation of the raw text: a word (lower-cased, in
    `vocabulary`) seen at least `min_count` times away from a sentence start is a name (1) when >= 90% of those
    occurrences are capitalised, a common word (0) when <= 10% are; in-between words and "i" are dropped. Common
    words are subsampled to as many as there are names, and the words are split at random into train and test
    (no word in both). -> (train, test) lists of (word, label)."""
    vocabulary = set(vocabulary)
    caps, total = {}, {}
    for p in paragraphs:
        for m in _CAP_WORD_RE.finditer(p):
            before = p[:m.start()].rstrip()
            if not before or before[-1] in _SENTENCE_START:
                continue  # a sentence's first word is capitalised whatever it is
            word = m.group().lower()
            total[word] = total.get(word, 0) + 1
            caps[word] = caps.get(word, 0) + m.group()[0].isupper()
    names, common = [], []
    for word in sorted(total):
        if word not in vocabulary or word == "i" or total[word] < min_count:
            continue
        share = caps[word] / total[word]
        if share >= 0.9:
            names.append(word)
        elif share <= 0.1:
            common.append(word)
    rng = random.Random(seed)
    common = rng.sample(common, min(len(common), len(names)))
    rows = [(w, 1) for w in names] + [(w, 0) for w in common]
    rng.shuffle(rows)
    cut = int(len(rows) * (1 - test_fraction))
    return rows[:cut], rows[cut:]
