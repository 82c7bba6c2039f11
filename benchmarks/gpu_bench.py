"""GPU benchmark for the CUDA kernels (issue #8), run by benchmarks/gpu_check.sh on a lent GPU; writes one JSON.

attention: pyfast's CUDA kernels (their tensor-core path: bf16 at D = 64 / 128) vs torch SDPA's backends (flash,
efficient, cudnn, whichever run), bf16, head dims 64 and 128, N = 1k..8k, causal and not; forward and
forward+backward TFLOP/s (causal counts half the FLOPs). Each case is checked against SDPA before it is timed.
masking: tokens/s of pyfast.mask_tokens on GPU tensors vs HF's torch_mask_tokens (GPU ids), the same algorithm
all on the GPU, and pyfast on CPU tensors, after a bit-for-bit GPU == CPU check. SGNS: pairs/s of forward +
backward (sparse gradients) vs plain PyTorch (nn.Embedding(sparse=True) + bmm) on the GPU, after a loss/gradient
check. Sections run masking, sgns, attention
(the cheap ones first); each is wrapped so a failure is recorded and the next still runs, and the JSON is
rewritten after every section.

Timing: CUDA events, 1 warm-up then the median of `reps` runs, contenders interleaved per case. A time budget
(--budget-s) stops the sweep early rather than overrun the device lease; what was skipped is recorded.
Usage: python benchmarks/gpu_bench.py --out $OUT/gpu-DATE.json [--budget-s 200] [--only masking,sgns,attention]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import torch

import pyfast


def _time_ms(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _sdpa_backends():
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    return {name: getattr(SDPBackend, attr) for name, attr in names.items() if hasattr(SDPBackend, attr)}


def _attention_contender(backend, q, k, v, grad, causal: bool, scale: float):
    """(forward, forward + backward) closures for one case: pyfast's CUDA kernels when backend is None, else torch
    SDPA restricted to that backend."""
    from torch.nn.attention import sdpa_kernel

    from pyfast.ops import attention as ops

    n = q.shape[-2]

    def fwd():
        if backend is None:
            return ops.attention_fwd(q, k, v, None, None, None, n, n, causal, scale, 0.0, 0)[0]
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def fwdbwd():
        torch.autograd.backward(fwd(), grad)

    return fwd, fwdbwd


def bench_attention(budget_s: float, reps: int) -> dict:
    results, skipped = [], []
    t_begin = time.perf_counter()
    tokens = 16384  # B * N fixed so every case moves the same activations
    for d in (64, 128):
        for n in (1024, 2048, 4096, 8192):
            for causal in (False, True):
                case = dict(head_dim=d, seq_len=n, causal=causal, batch=max(1, tokens // n), heads=16, dtype="bf16")
                if time.perf_counter() - t_begin > budget_s:
                    skipped.append(case)
                    continue
                b, h = case["batch"], case["heads"]
                q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                grad = torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                scale = 1.0 / math.sqrt(d)
                flops_fwd = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
                flops_fwdbwd = flops_fwd * 3.5  # backward = 2.5x forward (5 GEMMs vs 2)

                # The contenders hold the case's tensors; `del` below frees them before the next, larger case.
                contenders = {"pyfast": _attention_contender(None, q, k, v, grad, causal, scale)}
                with torch.no_grad():
                    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    ours = contenders["pyfast"][0]()
                    case["max_abs_diff_vs_sdpa"] = (ours.float() - ref.float()).abs().max().item()
                    del ref, ours
                for name, backend in _sdpa_backends().items():
                    pair = _attention_contender(backend, q, k, v, grad, causal, scale)
                    try:
                        pair[0]()
                        contenders["sdpa_" + name] = pair
                    except RuntimeError as exc:  # backend not available for this case
                        case["sdpa_" + name] = f"unavailable: {str(exc).splitlines()[0][:120]}"
                    del pair
                for name, (fwd, fwdbwd) in contenders.items():  # interleaved per case
                    try:
                        ms_f = _time_ms(fwd, reps)
                        ms_fb = _time_ms(fwdbwd, reps)
                        case[name] = dict(fwd_ms=ms_f, fwd_tflops=flops_fwd / ms_f / 1e9, fwdbwd_ms=ms_fb,
                                          fwdbwd_tflops=flops_fwdbwd / ms_fb / 1e9)
                    except RuntimeError as exc:
                        case[name] = f"failed: {str(exc).splitlines()[0][:200]}"
                results.append(case)
                print(json.dumps(case), flush=True)
                del q, k, v, grad, contenders, fwd, fwdbwd
                torch.cuda.empty_cache()
    return dict(cases=results, skipped_for_time=skipped)


def _time_wall_interleaved(contenders: dict, reps: int, sync=None) -> dict:
    """Median wall ms per contender, interleaved A B C, A B C, ... (one warm-up each first). The device is
    synchronised before and after every call, so CPU, GPU and mixed contenders are timed alike."""
    sync = torch.cuda.synchronize if sync is None else sync
    times = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()
    sync()
    for _ in range(reps):
        for name, fn in contenders.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _torch_mask_tokens_gpu(ids, special, mask_id, vocab, gen, p=0.15):
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


def bench_masking(reps: int) -> dict:
    """tokens/s of pyfast.mask_tokens on GPU tensors vs HF's torch_mask_tokens (GPU ids; HF draws on the CPU), the
    same algorithm all on the GPU, and pyfast on CPU tensors. Checked first: GPU output == CPU output, bit for bit."""
    from pyfast.ops import mask_tokens

    cases = []
    for b, l, mode in ((256, 512, "piece"), (256, 512, "whole_word"), (256, 512, "exact"), (64, 2048, "piece")):
        vocab, mask_id, specials = 30522, 4, [0, 1, 2, 3, 4]
        g = torch.Generator().manual_seed(0)
        ids_cpu = torch.randint(5, vocab, (b, l), generator=g)
        ids_cpu[:, 0], ids_cpu[:, -1] = 2, 3
        special_cpu = torch.isin(ids_cpu, torch.tensor(specials))
        kw = dict(mask_token_id=mask_id, vocab_size=vocab, special_token_ids=specials, seed=1)
        if mode == "whole_word":
            kw["word_starts"] = torch.rand(b, l, generator=g) < 0.7
        if mode == "exact":
            kw["max_predictions"] = int(0.15 * l) + 1
        kw_gpu = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        ids = ids_cpu.cuda()
        special = special_cpu.cuda()
        case = dict(batch=b, seq_len=l, vocab=vocab, mode=mode, tokens=b * l)
        try:
            go, gl = mask_tokens(ids, **kw_gpu)
            co, cl = mask_tokens(ids_cpu, **kw)
            case["bitwise_equal_cpu"] = bool(torch.equal(go.cpu(), co) and torch.equal(gl.cpu(), cl))
            case["chosen_rate"] = (gl != -100).double().mean().item()
        except Exception as exc:  # recorded, and the timing below still runs
            case["check_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        contenders = {
            "pyfast_gpu": lambda: mask_tokens(ids, **kw_gpu),
            "pyfast_cpu": lambda: mask_tokens(ids_cpu, **kw),
        }
        if mode == "piece":
            gen = torch.Generator(device="cuda").manual_seed(0)
            contenders["torch_bernoulli_gpu"] = lambda: _torch_mask_tokens_gpu(ids, special, mask_id, vocab, gen)
            try:
                from transformers import DataCollatorForLanguageModeling as HFCollator

                from pyfast.bench.masking import _tokenizer, seeded_hf_collator

                hf = seeded_hf_collator(HFCollator, _tokenizer(vocab))
                stm = special_cpu.long()  # HF draws on the CPU: its probability matrix is a CPU tensor
                hf.torch_mask_tokens(ids.clone(), special_tokens_mask=stm)
                contenders["hf_torch_mask_tokens_gpu_ids"] = lambda: hf.torch_mask_tokens(ids.clone(),
                                                                                         special_tokens_mask=stm)
            except Exception as exc:
                case["hf_torch_mask_tokens_gpu_ids"] = f"unavailable: {type(exc).__name__}: {str(exc)[:160]}"
        try:
            ms = _time_wall_interleaved(contenders, reps)
            for name, t in ms.items():
                case[name] = dict(ms=t, tokens_per_s=b * l / t * 1e3)
            for name in ms:
                if name != "pyfast_gpu":
                    case[f"speedup_pyfast_gpu_vs_{name}"] = ms[name] / ms["pyfast_gpu"]
        except Exception as exc:
            case["timing_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        cases.append(case)
        print(json.dumps(case), flush=True)
    return dict(cases=cases, timing="wall clock with device syncs, interleaved, median of reps")


def bench_sgns(reps: int, device: str = "cuda") -> dict:
    """pairs/s of one training step of issue #6 (zero_grad, forward, backward with sparse gradients,
    torch.optim.SGD) of pyfast.nn.SkipGramNS on GPU tensors vs the plain PyTorch module (two nn.Embedding(sparse=True),
    bmm, logsigmoid) on the GPU, the same weights and batch. Checked first: same loss and gradients. The first case
    is the issue's shape (V=50k, D=128, N=4096, K=5); the others are larger. ``device`` exists so the section can be
    smoke-tested on a CPU."""
    from pyfast.nn import SkipGramNS
    from pyfast.reference.sgns import TorchSkipGramNS

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    cases = []
    for v, d, n, k in ((50_000, 128, 4096, 5), (100_000, 128, 8192, 5), (100_000, 300, 8192, 5),
                       (1_000_000, 128, 65536, 5), (50_000, 100, 4096, 20)):
        case = dict(V=v, D=d, N=n, K=k, dtype="float32", sparse=True, timed="zero_grad + forward + backward + SGD")
        torch.manual_seed(0)
        with torch.device(device):  # initialised on the device: no host-side init and copy
            plain_model = TorchSkipGramNS(v, d, sparse=True)
            ours_model = SkipGramNS(v, d, sparse=True)
            with torch.no_grad():
                ours_model.in_embed.weight.copy_(plain_model.in_embed.weight)
                ours_model.out_embed.weight.normal_(0.0, 0.1)
                plain_model.out_embed.weight.copy_(ours_model.out_embed.weight)
            centers = torch.randint(0, v, (n,))
            contexts = torch.randint(0, v, (n,))
            negatives = torch.randint(0, v, (n, k))
        models = {"pyfast_gpu": ours_model, "torch_embedding_sparse_gpu": plain_model}
        opts = {name: torch.optim.SGD(m.parameters(), lr=0.025) for name, m in models.items()}

        def stepper(model, opt):
            def step():
                opt.zero_grad(set_to_none=True)
                model(centers, contexts, negatives).backward()
                opt.step()
            return step

        try:
            losses, grads = {}, {}
            for name, model in models.items():
                model.zero_grad(set_to_none=True)
                loss = model(centers, contexts, negatives)
                loss.backward()
                losses[name] = loss.item()
                grads[name] = [p.grad.to_dense() for p in (model.in_embed.weight, model.out_embed.weight)]
            mine, theirs = grads["pyfast_gpu"], grads["torch_embedding_sparse_gpu"]
            case["loss_abs_diff"] = abs(losses["pyfast_gpu"] - losses["torch_embedding_sparse_gpu"])
            case["grad_in_max_abs_diff"] = (mine[0] - theirs[0]).abs().max().item()
            case["grad_out_max_abs_diff"] = (mine[1] - theirs[1]).abs().max().item()
            case["grad_max_abs"] = max(g.abs().max().item() for g in theirs)
            del grads, mine, theirs
        except Exception as exc:
            case["check_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        try:
            ms = _time_wall_interleaved({name: stepper(m, opts[name]) for name, m in models.items()}, reps, sync)
            for name, t in ms.items():
                case[name] = dict(ms=t, pairs_per_s=n / t * 1e3)
            case["speedup_pyfast_vs_torch"] = ms["torch_embedding_sparse_gpu"] / ms["pyfast_gpu"]
        except Exception as exc:
            case["timing_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        cases.append(case)
        print(json.dumps(case), flush=True)
        del models, opts, plain_model, ours_model
        if device == "cuda":
            torch.cuda.empty_cache()
    return dict(cases=cases, timing="one SGD step (sparse grads), wall clock with syncs, interleaved, median")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=200.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated sections (masking,sgns,attention); default all")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    # Merge into an existing record: gpu_check.sh runs each section in its own process (a sticky CUDA fault in one
    # section then cannot poison the next), all writing the same file.
    record = {}
    if os.path.exists(args.out):
        try:
            with open(args.out) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {}
    record.update(
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device=torch.cuda.get_device_name(0),
        capability=list(torch.cuda.get_device_capability(0)), torch=torch.__version__, python=platform.python_version(),
        pyfast=pyfast.info(), note="pyfast attention CUDA kernels: bf16/fp16 at head dims 64 and 128 (every case here) "
        "run forward and backward on tensor cores (mma.sync m16n8k16, fp32 accumulation), other cases on CUDA-core "
        "fp32; masking and SGNS CUDA kernels: first GPU run of code compiled but only verified on a host emulator before",
    )

    def write():  # after every section: a later crash or timeout cannot lose what was measured
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.out)

    sections = (("masking", lambda: bench_masking(args.reps)), ("sgns", lambda: bench_sgns(args.reps)),
                ("attention", lambda: bench_attention(args.budget_s, args.reps)))
    for name, run in sections:
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        try:
            record[name] = run()
        except Exception as exc:  # one failing section must not lose the others
            record[name] = dict(status="failed", error=f"{type(exc).__name__}: {exc}"[:500],
                                traceback=traceback.format_exc()[-2000:])
            print(f"section {name} failed: {exc}", file=sys.stderr, flush=True)
        record.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        write()
        torch.cuda.empty_cache()
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
