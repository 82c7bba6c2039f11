"""Training-step throughput of pyfast's small BERT (MLM, sparse prediction) and GPT (causal LM) beside HF
transformers' BertForMaskedLM / GPT2LMHeadModel of the same size (sdpa attention, no dropout) when installed.

One timed call = forward + backward + AdamW step on a fixed, pre-masked batch (masking itself is the masking
bench's subject). Work unit: thousands of tokens per second. The floor is the GEMM peak: a step costs about
6 * (parameters touched per token) flops per token, quoted beside the result.
"""
from __future__ import annotations

import torch

from .harness import Case, Contender


def _step(model, optimizer, inputs):
    def run():
        loss = model(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return run


def _flops_per_token(hidden, layers, seq, vocab, head_fraction):
    per_layer = 2 * (4 * hidden * hidden + 2 * hidden * 4 * hidden) + 2 * 2 * seq * hidden  # projections, MLP, QK/PV
    return 3 * (layers * per_layer + head_fraction * 2 * (hidden * hidden + hidden * vocab))  # fwd + bwd = 3x fwd


GEMM_PEAK_GFLOPS = 75.0  # fp32 torch.mm 1024^3 on this project's 2-core machines (benchmarks/RESULTS.md, #2)


def _floor(flops_per_token, what):
    return (f"~{flops_per_token / 1e6:.2f} MFLOP/token ({what}); at the {GEMM_PEAK_GFLOPS:.0f} GFLOP/s GEMM peak: "
            f"<= {GEMM_PEAK_GFLOPS * 1e6 / flops_per_token:.0f} Ktok/s")


def _bert_case(batch, seq, hidden, layers, heads, vocab, repeat):
    from pyfast.models import BertConfig, BertForMaskedLM
    from pyfast.ops.masking import mask_tokens

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch, seq), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3
    masked, labels = mask_tokens(ids, mask_token_id=4, vocab_size=vocab, special_token_ids=[0, 1, 2, 3, 4], seed=1)
    inputs = {"input_ids": masked, "labels": labels}
    dims = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * hidden, max_position_embeddings=seq, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    sparse = BertForMaskedLM(BertConfig(**dims, sparse_prediction=True))
    dense = BertForMaskedLM(BertConfig(**dims, sparse_prediction=False))
    dense.load_state_dict(sparse.state_dict())

    def check():
        with torch.no_grad():
            a, b = sparse(**inputs).loss, dense(**inputs).loss
        if not torch.isfinite(a) or abs(float(a) - float(b)) > 1e-4 * max(1.0, abs(float(b))):
            raise AssertionError(f"bert bench: sparse loss {float(a)} != dense loss {float(b)}")

    contenders = [
        Contender("pyfast (sparse pred.)", _step(sparse, torch.optim.AdamW(sparse.parameters(), 1e-4), inputs),
                  check=check),
        Contender("pyfast (dense pred.)", _step(dense, torch.optim.AdamW(dense.parameters(), 1e-4), inputs)),
    ]
    try:
        import transformers

        peer = transformers.BertForMaskedLM(transformers.BertConfig(**dims, attn_implementation="sdpa"))
        contenders.append(Contender("HF BertForMaskedLM", _step(peer, torch.optim.AdamW(peer.parameters(), 1e-4),
                                                                 inputs)))
    except ImportError:
        pass
    flops = _flops_per_token(hidden, layers, seq, vocab, head_fraction=float((labels != -100).float().mean()))
    return Case(bench="models", name=f"BERT MLM step B{batch} L{seq} H{hidden} x{layers} V{vocab}",
                contenders=contenders, work=batch * seq * 1e-3, unit="Ktok/s", baseline=contenders[-1].name,
                params=dict(batch=batch, seq=seq, hidden=hidden, layers=layers, heads=heads, vocab=vocab),
                repeat=repeat, floor_note=_floor(flops, "sparse head"))


def _gpt_case(batch, seq, hidden, layers, heads, vocab, repeat):
    from pyfast.models import GPTConfig, GPTLMHeadModel

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    inputs = {"input_ids": ids, "labels": ids}
    torch.manual_seed(0)
    ours = GPTLMHeadModel(GPTConfig(vocab_size=vocab, n_positions=seq, n_embd=hidden, n_layer=layers, n_head=heads,
                                    dropout=0.0))

    def check():
        with torch.no_grad():
            loss = float(ours(**inputs).loss)
        if not abs(loss - torch.log(torch.tensor(float(vocab))).item()) < 1.0:  # fresh model ~ uniform over vocab
            raise AssertionError(f"gpt bench: initial loss {loss} far from log(V)")

    contenders = [Contender("pyfast GPT", _step(ours, torch.optim.AdamW(ours.parameters(), 1e-4), inputs), check=check)]
    try:
        import transformers

        peer = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=vocab, n_positions=seq, n_embd=hidden, n_layer=layers, n_head=heads, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa",
            loss_type="ForCausalLM"))
        contenders.append(Contender("HF GPT2LMHeadModel", _step(peer, torch.optim.AdamW(peer.parameters(), 1e-4),
                                                                 inputs)))
    except ImportError:
        pass
    flops = _flops_per_token(hidden, layers, seq, vocab, head_fraction=1.0)
    return Case(bench="models", name=f"GPT CLM step B{batch} L{seq} H{hidden} x{layers} V{vocab}",
                contenders=contenders, work=batch * seq * 1e-3, unit="Ktok/s", baseline=contenders[-1].name,
                params=dict(batch=batch, seq=seq, hidden=hidden, layers=layers, heads=heads, vocab=vocab),
                repeat=repeat, floor_note=_floor(flops, "full head"))


def cases(quick: bool = False, device: str = "cpu") -> list[Case]:
    if device != "cpu":  # the model steps are CPU benchmarks (GPU model steps: not measured yet)
        return []
    if quick:
        return [_bert_case(8, 64, 64, 2, 4, 2000, 3), _gpt_case(8, 64, 64, 2, 4, 2000, 3)]
    return [_bert_case(32, 128, 256, 4, 4, 8000, 5), _gpt_case(16, 128, 256, 4, 4, 8000, 5)]
