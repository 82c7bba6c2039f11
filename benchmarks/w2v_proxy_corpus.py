"""Builds the non-repeating ~3.0M-word English proxy corpus used for the CBOW quality checks of issue #3
(benchmarks/RESULTS.md), one sentence/paragraph/entry per line, lines shuffled with seed 0:
  - the real English text in gensim's test data, as pyfast.bench.word2vec.build_corpus takes it (enwiki shortened
    dump via WikiCorpus, lee_background, Pang-Lee polarity, IMDB sample): 0.52M words;
  - Jane Austen's six novels from Debian's r-cran-janeaustenr (MIT packaging, public-domain text), one paragraph
    per line: 0.72M words;
  - every other entry of GCIDE (Webster 1913 and additions, Debian's dict-gcide, GPL), pronunciations, bracketed
    etymologies and citations removed: 1.8M words.
Tokens: gensim's simple_preprocess (lower case, alphabetic). Nothing is repeated.

    mkdir -p /tmp/deb && cd /tmp/deb && apt-get download dict-gcide r-cran-janeaustenr && \
        for f in *.deb; do dpkg-deb -x $f x; done
    PYTHONPATH=. python benchmarks/w2v_proxy_corpus.py /tmp/deb/x /tmp/w2v_proxy.txt
    python benchmarks/bench_word2vec.py --corpus /tmp/w2v_proxy.txt --only cbow
    PYTHONPATH=. python benchmarks/w2v_proxy_corpus.py /tmp/deb/x /tmp/w2v_proxy5m.txt 1   # every GCIDE entry: ~4.9M words
"""
import gzip
import os
import random
import re
import struct
import sys
import zlib


def austen_novels(root: str) -> list[str]:
    """The character vectors in janeaustenr's R lazy-load database (each object: 4-byte length, then a zlib stream
    of an XDR-serialised STRSXP)."""
    data = open(os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"), "rb").read()
    pos, books = 0, []
    while pos < len(data):
        d = zlib.decompressobj()
        raw = d.decompress(data[pos + 4:])
        pos = len(data) - len(d.unused_data)
        p = 2  # "X\n"
        version = struct.unpack(">i", raw[p:p + 4])[0]
        p += 12
        if version == 3:
            p += 4 + struct.unpack(">i", raw[p:p + 4])[0]  # native encoding name
        flags, n = struct.unpack(">ii", raw[p:p + 8])
        p += 8
        if flags & 0xFF != 16:  # not a character vector
            continue
        lines = []
        for _ in range(n):
            _, length = struct.unpack(">ii", raw[p:p + 8])
            p += 8
            if length >= 0:
                lines.append(raw[p:p + length].decode("latin-1"))
                p += length
            else:
                lines.append("")
        books.append("\n".join(lines))
    return books


def main(root: str, out: str, gcide_every: int = 2) -> None:
    from gensim.utils import simple_preprocess

    from pyfast.bench.word2vec import gensim_corpus_lines

    lines = gensim_corpus_lines()
    for book in austen_novels(root):
        for para in re.split(r"\n\s*\n", book):
            t = simple_preprocess(para)
            if len(t) >= 3:
                lines.append(" ".join(t))
    with gzip.open(os.path.join(root, "usr/share/dictd/gcide.dict.dz"), "rt", encoding="utf-8", errors="replace") as fh:
        entries = re.split(r"\n\s*\n", fh.read())
    for k, entry in enumerate(entries[200:]):  # the first ~200 blocks are the dictionary's own front matter
        if k % gcide_every:
            continue
        entry = re.sub(r"\\[^\\\n]*\\", " ", entry)      # \Pro*nun"ci*a`tion\
        entry = re.sub(r"\[[^\]]*\]", " ", entry)        # [Etymology.] [1913 Webster]
        entry = re.sub(r"--[A-Z][\w\. ]*", " ", entry)   # --Author.
        t = simple_preprocess(entry)
        if len(t) >= 3:
            lines.append(" ".join(t))
    random.Random(0).shuffle(lines)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, out)  # atomic: a reader never sees half a corpus
    print(f"{out}: {len(lines)} lines, {sum(len(x.split()) for x in lines)} words")


if __name__ == "__main__":
    # Optional third argument: take every Nth GCIDE entry (default 2: the 3.05M-word proxy; 1: all, ~4.9M words).
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
