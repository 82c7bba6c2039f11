"""SGNS op benchmark: one training step (forward + backward + torch.optim.SGD) of pyfast's SkipGramNS against the
plain PyTorch module (nn.Embedding(sparse=True), bmm, logsigmoid) on the same batch, in pairs/s; and the fused step
``SkipGramNS.sgd_step`` (pyfast.ops.sgns_sgd_step: the same SGD update, no autograd) as a third contender.

Both start from the same weights and both tables get transparent huge pages (advise_hugepages), so the only
difference is the op. Before timing, the loss and both sparse gradients are checked to agree. Three id
distributions: raw Zipf draws, a word2vec pipeline batch (Zipf corpus -> subsampled window pairs -> shuffled; what a
real loop feeds the op) and uniform ids (the worst case: every row a cache miss, the most distinct rows).
Floors (V=50k, D=128, N=4096, K=5, float32): a step gathers 7N rows (14.7 MB), writes ~U_in + U_out gradient
rows and the SGD update reads/writes them again: ~50 MB, ~3.5 ms at the 15 GB/s this machine copies at;
its ~19 MFLOP are < 0.3 ms even at the measured 68 GFLOP/s fp32 GEMM rate (python -m pyfast bench machine).
"""
from __future__ import annotations

import torch

from .harness import Case, Contender


def _batch(num_embeddings: int, n: int, k: int, ids: str, seed: int):
    from ..data.samplers import NoiseSampler, skipgram_pairs

    g = torch.Generator().manual_seed(seed)
    if ids == "pipeline":
        # What a word2vec loop feeds the op: a Zipf corpus of 500k tokens, skip-gram pairs in a window of 5 after
        # subsampling (1e-3), shuffled, negatives from count^0.75 of the corpus counts. Subsampling flattens the
        # frequent words, so a batch holds more distinct ids than raw Zipf draws.
        tokens = torch.multinomial(1.0 / torch.arange(1, num_embeddings + 1, dtype=torch.float64), 500_000,
                                   replacement=True, generator=g)
        counts = torch.bincount(tokens, minlength=num_embeddings).to(torch.float64)
        centers, contexts = skipgram_pairs(tokens, 5, counts=counts, sample=1e-3, seed=seed)
        pick = torch.randperm(centers.numel(), generator=g)[:n]
        return centers[pick].contiguous(), contexts[pick].contiguous(), NoiseSampler(counts).sample(n, k, seed=seed)
    if ids == "uniform":
        centers = torch.randint(0, num_embeddings, (n,), generator=g)
        contexts = torch.randint(0, num_embeddings, (n,), generator=g)
        negatives = torch.randint(0, num_embeddings, (n, k), generator=g)
        return centers, contexts, negatives
    # Zipf-distributed words (count ~ 1 / rank), negatives from count^0.75: what a word2vec batch looks like.
    counts = 1.0 / torch.arange(1, num_embeddings + 1, dtype=torch.float64)
    centers = torch.multinomial(counts, n, replacement=True, generator=g)
    contexts = torch.multinomial(counts, n, replacement=True, generator=g)
    negatives = NoiseSampler(counts).sample(n, k, seed=seed)
    return centers, contexts, negatives


def _step_case(num_embeddings: int, dim: int, n: int, k: int, ids: str, repeat: int, device: str = "cpu") -> Case:
    """One training step (zero_grad, forward, backward with sparse gradients, SGD) of pyfast's SkipGramNS against
    the plain PyTorch module, the same weights and batch, on `device`; loss and gradients checked first."""
    from ..nn.sgns import SkipGramNS
    from ..ops.sgns import advise_hugepages
    from ..reference.sgns import TorchSkipGramNS

    torch.manual_seed(0)
    centers, contexts, negatives = (t.to(device) for t in _batch(num_embeddings, n, k, ids, seed=1))
    w_in = (torch.randn(num_embeddings, dim) * 0.1).to(device)
    w_out = (torch.randn(num_embeddings, dim) * 0.1).to(device)

    def make(cls):
        with torch.device(device):
            model = cls(num_embeddings, dim, sparse=True)
        with torch.no_grad():
            model.in_embed.weight.copy_(w_in)
            model.out_embed.weight.copy_(w_out)
        advise_hugepages(model.in_embed.weight)  # CPU tables only (a no-op on the GPU)
        advise_hugepages(model.out_embed.weight)
        return model

    def check():
        a, b = make(TorchSkipGramNS), make(SkipGramNS)
        la, lb = a(centers, contexts, negatives), b(centers, contexts, negatives)
        la.backward()
        lb.backward()
        torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-6)
        for name in ("in_embed", "out_embed"):
            ga = getattr(a, name).weight.grad.to_dense()
            gb = getattr(b, name).weight.grad.to_dense()
            torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name} grad: {m}")

    lr = 0.025

    def check_fused_step():
        # One fused step against one autograd step of the plain module from the same weights: loss and both tables.
        ref, fused = make(TorchSkipGramNS), make(SkipGramNS)
        opt = torch.optim.SGD(ref.parameters(), lr=lr)
        want = ref(centers, contexts, negatives)
        want.backward()
        opt.step()
        got = fused.sgd_step(centers, contexts, negatives, lr=lr)
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
        for name in ("in_embed", "out_embed"):
            torch.testing.assert_close(getattr(fused, name).weight.detach(), getattr(ref, name).weight.detach(),
                                       rtol=1e-5, atol=1e-7, msg=lambda m: f"{name} after the fused step: {m}")

    suffix = " gpu" if device == "cuda" else ""
    contenders = []
    for label, cls in (("torch nn.Embedding(sparse)", TorchSkipGramNS), ("pyfast SkipGramNS", SkipGramNS)):
        model = make(cls)
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = model(centers, contexts, negatives)
            loss.backward()
            opt.step()

        contenders.append(Contender(label + suffix, step, check=check if cls is SkipGramNS else None))
    fused_model = make(SkipGramNS)
    contenders.append(Contender(
        "pyfast sgd_step (fused)" + suffix,
        lambda: fused_model.sgd_step(centers, contexts, negatives, lr=lr), check=check_fused_step))
    params = {"V": num_embeddings, "D": dim, "N": n, "K": k, "ids": ids,
              "timed": "zero_grad + forward + backward + SGD (the fused step: sgns_sgd_step, the same update)"}
    if device == "cpu":
        params["threads"] = torch.get_num_threads()
    return Case(
        bench="sgns", name=f"{'cuda ' if device == 'cuda' else ''}step V{num_embeddings} D{dim} N{n} K{k} {ids} fp32",
        contenders=contenders, work=n * 1e-6, unit="Mpairs/s", baseline="torch nn.Embedding(sparse)" + suffix,
        params=params, repeat=repeat, warmup=2, device=device,
        floor_note=(f"least HBM traffic ~{_step_floor_mb(centers, contexts, negatives, dim):.0f} MB per step (distinct "
                    "rows read + written); microseconds at 4.8 TB/s: launch-bound (benchmarks/RESULTS.md)"
                    if device == "cuda" else
                    "~50 MB moved per step (~3.5 ms at 15 GB/s); ~19 MFLOP (negligible)"),
    )


def _step_floor_mb(centers, contexts, negatives, dim: int) -> float:
    """The distinct rows a step must read and write once (fp32), in MB: the byte floor of the SGD step."""
    distinct = torch.unique(centers).numel() + torch.unique(torch.cat([contexts, negatives.reshape(-1)])).numel()
    return 2 * distinct * dim * 4 / 1e6


def _cuda_cases(quick: bool):
    shapes = ((50_000, 128, 4096, 5), (100_000, 128, 8192, 5), (100_000, 300, 8192, 5), (1_000_000, 128, 65536, 5),
              (50_000, 100, 4096, 20))
    for shape in shapes[:1] if quick else shapes:  # the first is issue #18's acceptance shape
        yield _step_case(*shape, "uniform", repeat=5 if quick else 15, device="cuda")
        torch.cuda.empty_cache()


def cases(quick: bool = False, device: str = "cpu"):
    if device == "cuda":
        return _cuda_cases(quick)
    if quick:
        return [_step_case(5000, 64, 512, 5, "zipf", repeat=3)]
    return [_step_case(50_000, 128, 4096, 5, "zipf", repeat=15),
            _step_case(50_000, 128, 4096, 5, "pipeline", repeat=15),
            _step_case(50_000, 128, 4096, 5, "uniform", repeat=15)]
