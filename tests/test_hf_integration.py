"""attn_implementation="pyfast" in HF transformers: tiny random models of each family (BERT, GPT-2, Llama with GQA
and RoPE, ModernBERT with local/global layers) give the logits and parameter gradients of the same weights run
with "sdpa" (fp32, 1e-4), on padded batches; packed (padding-free) batches from DataCollatorWithFlattening give
what the sequences give run one by one, through pyfast.attention_varlen."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
pfhf = pytest.importorskip("pyfast.integrations.transformers")

import pyfast  # noqa: E402
from helpers import assert_close  # noqa: E402

TOL = dict(atol=1e-4, rtol=1e-4)
VOCAB = 97


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and pyfast.info()["cuda_built"]


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda_only,
                                               pytest.mark.skipif(not _cuda_ready(), reason="needs a CUDA build")])]


def _config(family: str, dropout: float = 0.0):
    t = transformers
    if family == "bert":
        return t.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=dropout)
    if family == "gpt2":
        return t.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=dropout, bos_token_id=1, eos_token_id=2)
    if family == "llama":  # GQA: 4 query heads share 2 k/v heads; RoPE
        return t.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                             attention_dropout=dropout, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "modernbert":  # layer 0 global, layer 1 local (window 4 < sequence length): both mask kinds
        return t.ModernBertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64, global_attn_every_n_layers=2,
                                  local_attention=4, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                  cls_token_id=1, sep_token_id=2, attention_dropout=dropout, embedding_dropout=0.0,
                                  mlp_dropout=0.0)
    raise ValueError(family)


_HEADS = {"bert": "BertForMaskedLM", "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
          "modernbert": "ModernBertForMaskedLM"}


def _pair(family: str, device: str, dropout: float = 0.0):
    """(pyfast model, sdpa model) with the same random weights."""
    cls = getattr(transformers, _HEADS[family])
    torch.manual_seed(0)
    ours = cls._from_config(_config(family, dropout), attn_implementation="pyfast").to(device)
    theirs = cls._from_config(_config(family, dropout), attn_implementation="sdpa").to(device)
    theirs.load_state_dict(ours.state_dict())
    assert ours.config._attn_implementation == "pyfast"
    return ours, theirs


def _padded_batch(device: str):
    lengths = [11, 7, 3]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    g = torch.Generator().manual_seed(1)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[b, :n] = 1
    return ids.to(device), mask.to(device)


def _real_token_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, logits.shape[-1], device=logits.device)
    return ((logits * w).sum(-1) * mask).sum()


def _assert_grads_close(ours, theirs):
    named = dict(theirs.named_parameters())
    n = 0
    for name, p in ours.named_parameters():
        if p.grad is None:
            assert named[name].grad is None, name
            continue
        assert_close(p.grad, named[name].grad, **TOL, name=f"grad {name}")
        n += 1
    assert n > 10  # every layer's weights got a gradient


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", list(_HEADS))
def test_padded_logits_and_gradients_match_sdpa(family, device):
    ours, theirs = _pair(family, device)
    ids, mask = _padded_batch(device)
    real = mask.bool()
    for m in (ours, theirs):
        m.eval()
    with torch.no_grad():
        lo, lt = ours(input_ids=ids, attention_mask=mask).logits, theirs(input_ids=ids, attention_mask=mask).logits
    assert_close(lo[real], lt[real], **TOL, name=f"{family} eval logits")
    for m in (ours, theirs):  # train mode, dropout 0: the backward through the kernel
        m.train()
        _real_token_loss(m(input_ids=ids, attention_mask=mask).logits, mask).backward()
    _assert_grads_close(ours, theirs)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_unpadded_causal_batch_takes_the_is_causal_path(family, monkeypatch):
    """No padding: HF's mask interface returns None and the kernel gets is_causal=True (no (L, S) mask)."""
    ours, theirs = _pair(family, "cpu")
    calls = []
    real_sdpa = pfhf.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        calls.append((attn_mask is None, kw["is_causal"], kw["enable_gqa"]))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(pfhf, "scaled_dot_product_attention", spy)
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        assert_close(ours.eval()(input_ids=ids).logits, theirs.eval()(input_ids=ids).logits, **TOL, name=family)
    assert calls == [(True, True, family == "llama")] * 2


def test_attention_dropout_applies_in_training_only():
    ours, theirs = _pair("bert", "cpu", dropout=0.5)
    ids, mask = _padded_batch("cpu")
    with torch.no_grad():
        ours.eval(), theirs.eval()
        assert_close(ours(input_ids=ids, attention_mask=mask).logits,
                     theirs(input_ids=ids, attention_mask=mask).logits, **TOL, name="eval with dropout 0.5")
        ours.train()
        a, b = (ours(input_ids=ids, attention_mask=mask).logits for _ in range(2))
    assert not torch.allclose(a, b)  # two draws differ
    torch.manual_seed(5)
    c = ours(input_ids=ids, attention_mask=mask).logits
    torch.manual_seed(5)
    assert torch.equal(c, ours(input_ids=ids, attention_mask=mask).logits)  # torch.manual_seed governs it


# ---- padding-free ------------------------------------------------------------------------------------------------
LENGTHS = [5, 12, 1, 8]


def _sequences():
    g = torch.Generator().manual_seed(2)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in LENGTHS]


# ModernBERT does not hand position_ids to its attention, so only the collator's cu_seq_lens can tell it the bounds.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family,flash_kwargs", [("llama", True), ("llama", False), ("bert", True), ("bert", False),
                                                 ("modernbert", True)])
def test_packed_batch_equals_sequences_one_by_one(family, flash_kwargs, device, monkeypatch):
    ours, _ = _pair(family, device)
    ours.train()  # dropout 0; train mode: no cache, so HF sees the packing too (decoders)
    seqs = _sequences()
    collator = transformers.DataCollatorWithFlattening(return_flash_attn_kwargs=flash_kwargs)
    batch = collator([{"input_ids": s} for s in seqs], return_tensors="pt")
    batch.pop("labels")
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    assert batch["input_ids"].shape == (1, sum(LENGTHS)) and "attention_mask" not in batch

    varlen_calls = []
    real_varlen = pfhf.attention_varlen
    monkeypatch.setattr(pfhf, "attention_varlen", lambda *a, **kw: varlen_calls.append(1) or real_varlen(*a, **kw))
    packed = ours(**batch).logits[0]
    if family == "modernbert":  # the local layer keeps its window mask, cut to each sequence: one varlen layer
        assert len(varlen_calls) == 1
    else:
        assert len(varlen_calls) == 2  # every layer, without building or reading a (T, T) mask
    w = torch.randn(packed.shape, generator=torch.Generator().manual_seed(3)).to(device)
    (packed * w).sum().backward()
    packed_grads = {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None}
    ours.zero_grad()

    start = 0
    for s in seqs:
        n = len(s)
        one = ours(input_ids=torch.tensor([s], device=device)).logits[0]
        assert_close(packed[start:start + n], one, **TOL, name=f"{family} sequence at {start}")
        (one * w[start:start + n]).sum().backward()
        start += n
    for name, p in ours.named_parameters():
        if p.grad is not None:
            assert_close(packed_grads[name], p.grad, **TOL, name=f"{family} packed grad {name}")


def test_packed_encoder_is_why_varlen_matters():
    """HF's "sdpa" BERT gets no mask for a packed batch and attends across sequences; pyfast's does not."""
    ours, theirs = _pair("bert", "cpu")
    batch = transformers.DataCollatorWithFlattening()([{"input_ids": s} for s in _sequences()], return_tensors="pt")
    batch.pop("labels")
    with torch.no_grad():
        first_alone = ours.eval()(input_ids=batch["input_ids"][:, :LENGTHS[0]]).logits
        assert_close(ours(**batch).logits[:, :LENGTHS[0]], first_alone, **TOL, name="pyfast packed")
        assert not torch.allclose(theirs.eval()(**batch).logits[:, :LENGTHS[0]], first_alone, atol=1e-3)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_packed_batch_under_inference_mode(family):
    """Inference tensors have no version counter: the per-forward cache steps aside, the result is the same."""
    ours, _ = _pair(family, "cpu")
    batch = transformers.DataCollatorWithFlattening()([{"input_ids": s} for s in _sequences()], return_tensors="pt")
    batch.pop("labels")
    with torch.no_grad():
        want = ours.eval()(**batch, use_cache=False).logits
    with torch.inference_mode():
        for _ in range(2):
            got = ours(input_ids=batch["input_ids"].clone(), position_ids=batch["position_ids"].clone(),
                       use_cache=False).logits
            assert_close(got, want, **TOL, name=f"{family} under inference_mode")
    with torch.no_grad():
        first_alone = ours(input_ids=batch["input_ids"][:, :LENGTHS[0]], use_cache=False).logits
    assert_close(want[:, :LENGTHS[0]], first_alone, **TOL, name=f"{family} first sequence")


def test_packed_sequences_from_position_ids():
    cu, longest = pfhf.packed_sequences(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]]))
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 5, 9] and longest == 4
    cu, longest = pfhf.packed_sequences(torch.tensor([[2, 3, 2, 3, 4]]))  # RoBERTa-like: ramps from padding_idx + 1
    assert cu.tolist() == [0, 2, 5] and longest == 3
    assert pfhf.packed_sequences(torch.tensor([[0, 1, 2, 3]])) is None          # one sequence
    assert pfhf.packed_sequences(torch.tensor([[1, 0, 1, 2]])) is None          # left-padded generation
    assert pfhf.packed_sequences(torch.tensor([[0, 1, 3, 0, 1]])) is None       # not ramps
    assert pfhf.packed_sequences(torch.tensor([[0, 1], [0, 1]])) is None        # batch > 1 is never packed
    assert pfhf.packed_sequences(torch.tensor([[0, 0, 0]]))[0].tolist() == [0, 1, 2, 3]


# ---- registration and errors ---------------------------------------------------------------------------------------
def test_register_is_idempotent_and_importing_pyfast_does_not_import_transformers():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    assert pfhf.is_registered()
    pfhf.register()
    pfhf.register()
    assert AttentionInterface._global_mapping["pyfast"] is pfhf.attention_forward
    assert pfhf.is_registered() and "pyfast" in AttentionMaskInterface._global_mapping
    pfhf.register("pyfast-test")
    assert pfhf.is_registered("pyfast-test")
    with pytest.raises(ValueError, match="register: name must be a non-empty string, got ''"):
        pfhf.register("")
    code = "import sys, pyfast; sys.exit(int('transformers' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_errors_are_precise():
    module = torch.nn.Module()
    q = torch.randn(1, 2, 6, 8)
    with pytest.raises(ValueError, match="pyfast attention does not support softcap"):
        pfhf.attention_forward(module, q, q, q, None, softcap=30.0)
    with pytest.raises(ValueError, match="packed inputs need all of cu_seq_lens_q, cu_seq_lens_k, max_length_q"):
        pfhf.attention_forward(module, q, q, q, None, cu_seq_lens_q=torch.tensor([0, 6], dtype=torch.int32))
    with pytest.raises(ValueError, match="must be flattened to batch 1 when it also has an attention mask"):
        q2 = torch.randn(2, 2, 3, 8)
        cu = torch.tensor([0, 3, 6], dtype=torch.int32)
        pfhf.attention_forward(module, q2, q2, q2, torch.ones(2, 1, 3, 3, dtype=torch.bool), cu_seq_lens_q=cu,
                               cu_seq_lens_k=cu, max_length_q=3, max_length_k=3)
    with pytest.warns(UserWarning, match="does not return attention weights"):
        out, weights = pfhf.attention_forward(module, q, q, q, None, output_attentions=True)
    assert weights is None and out.shape == (1, 6, 2, 8)
