"""Masked-token sampling: pyfast vs HF's DataCollatorForLanguageModeling (its torch_mask_tokens step and the whole
call) and a plain numpy version, on a B x L batch with a 30k vocabulary; tokens/s.

Floors (256 x 512, int64): the step reads 1 MiB of ids and writes 2 MiB (ids, labels): ~0.07 ms at the ~40 GB/s
cache-resident copy rate measured here; its Philox work is L/4 + 0.15 L blocks per row at ~3 ns (AVX2):
~0.1 ms on one core. No flops to speak of.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from .harness import Case, Contender

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]



def seeded_hf_collator(collator_cls, tokenizer, seed: int = 0):
    """HF's collator with its seeded generator made: transformers 5.2x takes create_rng(return_tensors), earlier 5.x
    releases (e.g. 5.17) create_rng() with no argument."""
    hf = collator_cls(tokenizer, seed=seed)
    try:
        hf.create_rng("pt")
    except TypeError:
        hf.create_rng()
    return hf

def _tokenizer(vocab_size: int):
    """A real HF fast BERT tokenizer with a synthetic vocabulary, built offline (no hub)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for i in range(len(SPECIALS), vocab_size):
        vocab[f"w{i}" if i % 3 else f"##p{i}"] = i
    d = tempfile.mkdtemp(prefix="pyfast-bench-")
    path = os.path.join(d, "tok.json")
    BertWordPieceTokenizer(vocab).save(path)
    return PreTrainedTokenizerFast(tokenizer_file=path, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def numpy_mask_tokens(ids: np.ndarray, special: np.ndarray, rng: np.random.Generator, mask_id: int, vocab: int,
                      p=0.15, mask_p=0.8, random_p=0.1):
    """What a careful numpy user writes: one uniform array per decision, boolean indexing."""
    labels = ids.copy()
    out = ids.copy()
    chosen = (rng.random(ids.shape, dtype=np.float32) < p) & ~special
    labels[~chosen] = -100
    u = rng.random(ids.shape, dtype=np.float32)
    out[chosen & (u < mask_p)] = mask_id
    rand = chosen & (u >= mask_p) & (u < mask_p + random_p)
    out[rand] = rng.integers(0, vocab, size=int(rand.sum()))
    return out, labels


def torch_mask_tokens_gpu(ids, special, mask_id, vocab, gen, p=0.15):
    """HF's torch_mask_tokens algorithm with every tensor and the generator on the GPU (what a user would write to
    keep the step on the device): three Bernoulli draws and a randint over (B, L)."""
    labels = ids.clone()
    prob = torch.full(ids.shape, p, device=ids.device).masked_fill_(special, 0.0)
    chosen = torch.bernoulli(prob, generator=gen).bool()
    labels[~chosen] = -100
    out = ids.clone()
    replaced = torch.bernoulli(torch.full(ids.shape, 0.8, device=ids.device), generator=gen).bool() & chosen
    out[replaced] = mask_id
    rand = torch.bernoulli(torch.full(ids.shape, 0.5, device=ids.device), generator=gen).bool() & chosen & ~replaced
    words = torch.randint(vocab, ids.shape, device=ids.device, generator=gen)
    out[rand] = words[rand]
    return out, labels


def _cuda_case(b: int, seq_len: int, mode: str, repeat: int) -> Case:
    """pyfast.mask_tokens on GPU tensors vs the same call on CPU tensors, the HF algorithm written in torch on the
    GPU, and HF's torch_mask_tokens given GPU ids (its draws stay on the CPU); checked first: the GPU's outputs
    equal the CPU's bit for bit (the same Philox keying)."""
    from ..ops.masking import mask_tokens

    vocab, mask_id, specials = 30522, 4, [0, 1, 2, 3, 4]
    g = torch.Generator().manual_seed(0)
    ids_cpu = torch.randint(5, vocab, (b, seq_len), generator=g)
    ids_cpu[:, 0], ids_cpu[:, -1] = 2, 3
    special_cpu = torch.isin(ids_cpu, torch.tensor(specials))
    kw = dict(mask_token_id=mask_id, vocab_size=vocab, special_token_ids=specials, seed=1)
    if mode == "whole_word":
        kw["word_starts"] = torch.rand(b, seq_len, generator=g) < 0.7
    if mode == "exact":
        kw["max_predictions"] = int(0.15 * seq_len) + 1
    kw_gpu = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    ids, special = ids_cpu.cuda(), special_cpu.cuda()
    params = {"B": b, "L": seq_len, "V": vocab, "mode": mode}

    def check():
        go, gl = mask_tokens(ids, **kw_gpu)
        co, cl = mask_tokens(ids_cpu, **kw)
        if not (torch.equal(go.cpu(), co) and torch.equal(gl.cpu(), cl)):
            raise AssertionError(f"mask_tokens on the GPU differs from the CPU ({mode})")
        params["chosen_rate"] = (gl != -100).double().mean().item()

    contenders = [Contender("pyfast gpu", lambda: mask_tokens(ids, **kw_gpu), check=check),
                  Contender("pyfast cpu", lambda: mask_tokens(ids_cpu, **kw))]
    if mode == "piece":
        gen = torch.Generator(device="cuda").manual_seed(0)
        contenders.append(Contender("torch bernoulli gpu", lambda: torch_mask_tokens_gpu(ids, special, mask_id,
                                                                                         vocab, gen)))
        try:
            from transformers import DataCollatorForLanguageModeling as HFCollator

            hf = seeded_hf_collator(HFCollator, _tokenizer(vocab))
            stm = special_cpu.long()  # HF draws on the CPU: its probability matrix is a CPU tensor
            hf.torch_mask_tokens(ids.clone(), special_tokens_mask=stm)
            contenders.append(Contender("hf.torch_mask_tokens gpu ids", lambda: hf.torch_mask_tokens(
                ids.clone(), special_tokens_mask=stm)))
        except Exception as exc:  # transformers missing, or a version whose collator rejects GPU ids
            params["hf unavailable"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    baseline = "hf.torch_mask_tokens gpu ids" if any(c.name.startswith("hf") for c in contenders) else "pyfast cpu"
    return Case(bench="masking", name=f"cuda mask {mode} {b}x{seq_len} V{vocab}", contenders=contenders,
                work=b * seq_len * 1e-6, unit="Mtokens/s", baseline=baseline, params=params, repeat=repeat,
                device="cuda")


def _cuda_cases(quick: bool):
    shapes = ((256, 512, "piece"), (256, 512, "whole_word"), (256, 512, "exact"), (64, 2048, "piece"))
    for b, seq_len, mode in shapes[:2] if quick else shapes:
        yield _cuda_case(b, seq_len, mode, repeat=5 if quick else 11)


def cases(quick: bool, device: str = "cpu"):
    if device == "cuda":
        return _cuda_cases(quick)
    from ..data import DataCollatorForLanguageModeling
    from ..ops import mask_tokens

    B, L, V = (32, 128, 30000) if quick else (256, 512, 30000)
    tok = _tokenizer(V)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(SPECIALS), V, (B, L), generator=g)
    ids[:, 0] = tok.cls_token_id
    ids[:, -1] = tok.sep_token_id
    special = torch.zeros(B, L, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    special_ids = tok.all_special_ids
    mask_id = tok.mask_token_id
    tokens = B * L
    out = []

    def check_ours():
        o, lab = mask_tokens(ids, mask_token_id=mask_id, vocab_size=V, special_token_ids=special_ids, seed=1)
        rate = (lab != -100).double().mean().item()
        if not 0.13 < rate < 0.17 or (lab[:, 0] != -100).any():
            raise AssertionError(f"pyfast mask_tokens chose {rate:.3f} of tokens")

    contenders = [Contender("pyfast.mask_tokens", lambda: mask_tokens(
        ids, mask_token_id=mask_id, vocab_size=V, special_token_ids=special_ids, seed=1), check=check_ours)]
    contenders.append(Contender("pyfast.mask_tokens(1 thread)", lambda: _one_thread(lambda: mask_tokens(
        ids, mask_token_id=mask_id, vocab_size=V, special_token_ids=special_ids, seed=1))))
    rng = np.random.default_rng(0)
    ids_np, special_np = ids.numpy(), special.numpy()
    contenders.append(Contender("numpy", lambda: numpy_mask_tokens(ids_np, special_np, rng, mask_id, V)))
    baseline = None
    try:
        from transformers import DataCollatorForLanguageModeling as HFCollator

        hf = seeded_hf_collator(HFCollator, tok)
        contenders.append(Contender("hf.torch_mask_tokens", lambda: hf.torch_mask_tokens(
            ids.clone(), special_tokens_mask=special.long())))
        contenders.append(Contender("hf.torch_mask_tokens(no stm)", lambda: hf.torch_mask_tokens(ids.clone())))
        baseline = "hf.torch_mask_tokens"
    except ImportError:
        hf = None
    out.append(Case(bench="masking", name=f"mask step {B}x{L} V{V}", contenders=contenders, work=tokens * 1e-6,
                    unit="Mtokens/s", baseline=baseline, params={"B": B, "L": L, "V": V}, repeat=21,
                    floor_note="memory ~0.07 ms (3 MiB at ~40 GB/s cache-resident); Philox ~0.1 ms/core"))

    # Whole call: features as a tokenizer/dataset gives them, lists of ints with attention masks, ragged.
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g).tolist()
    feats = [{"input_ids": ids[i, :n].tolist(), "attention_mask": [1] * n} for i, n in enumerate(lengths)]
    ours = DataCollatorForLanguageModeling(tok, seed=0)
    call = [Contender("pyfast collator", lambda: ours(feats))]
    call_base = None
    if hf is not None:
        call.append(Contender("hf collator", lambda: hf(feats)))
        call_base = "hf collator"
    out.append(Case(bench="masking", name=f"collator call {B}x<={L} V{V}", contenders=call,
                    work=sum(lengths) * 1e-6, unit="Mtokens/s", baseline=call_base, params={"B": B, "L": L, "V": V},
                    repeat=5))
    return out


def _one_thread(fn):
    from .._info import get_num_threads, set_num_threads

    old = get_num_threads()
    set_num_threads(1)
    try:
        return fn()
    finally:
        set_num_threads(old)
