"""Leak check: resident memory (/proc/self/statm) after 5,000 calls of each native op (forward and backward where
there is one) and 50 Word2Vec trainings of a tiny corpus grows by less than 20 MiB, measured after a warm-up (the
host buffer pool, torch's and malloc's caches fill there). All ops run in one subprocess, each warmed up before its
own measurement. test_leak_harness_detects_a_leak shows the measurement catches a leak of this size.

Limits: RSS sees leaks of memory that is touched (a malloc'd and written buffer, a tensor, a Python object); an
untouched malloc of a few pages may not show until it is written. 5,000 calls catch >= ~4 KiB per call.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import pyfast

_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyfast.__file__)))
LIMIT_MIB = 20.0
CALLS = 5000

_HARNESS = """
import gc, json, os, sys
import numpy as np
import torch
import pyfast
from pyfast import KeyedVectors, Word2Vec
from pyfast.data import sample_negatives
from pyfast.ops import gather_masked, mask_tokens

torch.set_num_threads(1)
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20

g = torch.Generator().manual_seed(0)
q = torch.randn(2, 2, 17, 16, generator=g, requires_grad=True)
k = torch.randn(2, 2, 23, 16, generator=g, requires_grad=True)
v = torch.randn(2, 2, 23, 16, generator=g, requires_grad=True)
mask = torch.rand(2, 1, 17, 23, generator=g) > 0.3
ids = torch.randint(5, 1000, (256, 512), generator=g)  # 1 MiB outputs: the host buffer pool's path
emb_in = torch.randn(500, 32, generator=g, requires_grad=True)
emb_out = torch.randn(500, 32, generator=g, requires_grad=True)
centers, contexts = torch.randint(0, 500, (128,), generator=g), torch.randint(0, 500, (128,), generator=g)
negatives = torch.randint(0, 500, (128, 5), generator=g)
counts = torch.randint(1, 100, (500,), generator=g)
hidden = torch.randn(16, 512, 8, generator=g)
rng = np.random.default_rng(0)
tiny = [[f"w{i}" for i in rng.integers(0, 50, 12)] for _ in range(20)]
kv = Word2Vec(tiny, vector_size=16, min_count=1, workers=2, epochs=1, seed=0).wv
leaked = []

def attention():
    out = pyfast.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()

def attention_causal():
    pyfast.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), is_causal=True)

def masking():
    masked, labels = mask_tokens(ids, vocab_size=1000, mask_token_id=4, seed=1)
    gather_masked(hidden, labels[:16])

def masking_spans():
    mask_tokens(ids[:16], vocab_size=1000, mask_token_id=4, seed=1, span_masking=True)

def sgns():
    pyfast.sgns_loss(emb_in, emb_out, centers, contexts, negatives).backward()

def negatives_sampler():
    sample_negatives(counts, 128, 5, seed=3)

def most_similar():
    kv.most_similar("w1", topn=5)

def word2vec():
    Word2Vec(tiny, vector_size=16, min_count=1, workers=2, epochs=1, seed=0)

def deliberate_leak():  # the harness's own check: 8 KiB of touched memory kept per call
    leaked.append(np.ones(1024))

calls = int(sys.argv[1])
for name in sys.argv[2:]:
    op = globals()[name]
    n = 50 if name == "word2vec" else calls
    for _ in range(max(50, n // 10)):  # warm-up
        op()
    gc.collect()
    before = rss_mib()
    for _ in range(n):
        op()
    gc.collect()
    print(json.dumps({"op": name, "calls": n, "growth_mib": rss_mib() - before, "rss_mib": rss_mib(),
                      "module": pyfast._C.__file__}), flush=True)
"""


OPS = ["attention", "attention_causal", "masking", "masking_spans", "sgns", "negatives_sampler", "most_similar",
       "word2vec"]


@pytest.fixture(scope="module")
def growth() -> dict:
    # One child for all ops (one torch import, ~3 s): each op is warmed up before its own measurement, and the
    # deliberate leak runs last so it cannot inflate another op's figure.
    env = dict(os.environ, PYTHONPATH=_PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(_HARNESS), str(CALLS), *OPS, "deliberate_leak"],
                           env=env, cwd=_PKG_ROOT, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return {r["op"]: r for r in map(json.loads, child.stdout.strip().splitlines())}


@pytest.mark.parametrize("op", OPS)
def test_no_leak(growth, op):
    result = growth[op]
    print(result)
    assert result["growth_mib"] < LIMIT_MIB, \
        f"{op}: RSS grew {result['growth_mib']:.1f} MiB over {result['calls']} calls"


def test_leak_harness_detects_a_leak(growth):
    result = growth["deliberate_leak"]  # 5,000 x 8 KiB = 39 MiB kept
    assert result["growth_mib"] >= LIMIT_MIB, result
