"""SGNS op: loss and gradients against the float64 PyTorch reference, sparse/dense gradients with SGD and SparseAdam,
duplicates, bad input, the noise sampler, the pair generator, opcheck, torch.compile and DDP. Tests that take the
``device`` fixture run the custom-op path on cpu, cuda and emu (CPU tensors through the CUDA kernel bodies; on CPU
tensors the eager mean / sum loss takes the fused CPU path, so those tests use reduction="none" or the op itself);
the rest test the CPU's fused path, the data utilities and the module."""
import copy
import functools
import io
import os

import pytest
import torch

import pyfast
from pyfast.nn import SkipGramNS
from pyfast.data import NoiseSampler, sample_negatives, skipgram_pairs
from pyfast.ops import sgns_loss
from pyfast.ops import sgns as sgns_module
from pyfast.ops import sgns_grad
from pyfast.reference.sgns import sgns_loss_reference
from helpers import assert_close, sgns_problem, spawn_target

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build


def _problem(v, d, n, k, dtype, dup=False, seed=0):
    return sgns_problem(v, d, n, k, dtype, dup, seed, scale=0.3)


def _grads(fn, w_in, w_out, *ids, reduction="mean", **kw):
    a = w_in.detach().clone().requires_grad_(True)
    b = w_out.detach().clone().requires_grad_(True)
    loss = fn(a, b, *ids, reduction=reduction, **kw)
    weight = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)  # non-uniform upstream grad
    (loss * weight).sum().backward()
    ga = a.grad.to_dense() if a.grad.is_sparse else a.grad
    gb = b.grad.to_dense() if b.grad.is_sparse else b.grad
    return loss.detach(), ga, gb


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [
    (1, 1, 1, 1, False), (37, 13, 29, 1, False), (101, 131, 67, 20, False), (50, 8, 64, 5, True),
    (7, 33, 200, 20, True), (1000, 7, 3, 3, False)])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_float64_reference(dtype, v, d, n, k, dup, sparse, reduction):
    w_in, w_out, *ids = _problem(v, d, n, k, dtype, dup)
    loss, ga, gb = _grads(sgns_loss, w_in, w_out, *ids, reduction=reduction, sparse=sparse)
    rl, rga, rgb = _grads(sgns_loss_reference, w_in.double(), w_out.double(), *ids, reduction=reduction)
    assert loss.dtype == dtype and ga.dtype == dtype
    for name, got, want in (("loss", loss, rl), ("grad in_weight", ga, rga), ("grad out_weight", gb, rgb)):
        # float32 sums of up to ~4000 terms: the tolerance scales with the largest value (error ~ eps * sum |terms|)
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        tol = dict(atol=1e-12 * scale, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-4 * scale, rtol=1e-4)
        assert_close(got, want, name=name, **tol)


def test_float32_error_within_2x_of_torch_float32():
    w_in, w_out, *ids = _problem(300, 100, 500, 20, torch.float32, dup=True)
    _, ga, gb = _grads(sgns_loss, w_in, w_out, *ids, sparse=True)
    _, ta, tb = _grads(sgns_loss_reference, w_in, w_out, *ids)
    _, ra, rb = _grads(sgns_loss_reference, w_in.double(), w_out.double(), *ids)
    for mine, torch32, ref in ((ga, ta, ra), (gb, tb, rb)):
        assert (mine.double() - ref).abs().max() <= 2 * (torch32.double() - ref).abs().max() + 1e-7


def _op_path_grads(w_in, w_out, ids, device, fn=sgns_loss, **kw):
    """reduction="none" (the custom op on every device) with a non-uniform upstream gradient: (loss, dense grads,
    raw grads), on the CPU."""
    a = w_in.detach().clone().to(device).requires_grad_(True)
    b = w_out.detach().clone().to(device).requires_grad_(True)
    loss = fn(a, b, *(t.to(device) for t in ids), reduction="none", **kw)
    weight = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype, device=device)
    (loss * weight).sum().backward()
    ga = a.grad.to_dense() if a.grad.is_sparse else a.grad
    gb = b.grad.to_dense() if b.grad.is_sparse else b.grad
    return loss.detach().cpu(), ga.cpu(), gb.cpu(), a.grad, b.grad


def _check_op_path(device, device_name, dtype, v, d, n, k, dup, sparse):
    w_in, w_out, *ids = _problem(v, d, n, k, dtype, dup)
    loss, ga, gb, raw_a, raw_b = _op_path_grads(w_in, w_out, ids, device, sparse=sparse)
    rl, rga, rgb, _, _ = _op_path_grads(w_in.double(), w_out.double(), ids, "cpu", fn=sgns_loss_reference)
    assert loss.dtype == dtype and ga.dtype == dtype
    assert raw_a.device.type == device.type and raw_a.is_sparse == sparse and raw_b.is_sparse == sparse
    if sparse and device_name == "cuda":  # one row per occurrence, as nn.Embedding(sparse=True) gives them
        assert raw_a._nnz() == n and raw_b._nnz() == n * (k + 1)
    elif sparse:  # one row per unique id
        c, x, ng = ids
        assert raw_a._nnz() == torch.unique(c).numel()
        assert raw_b._nnz() == torch.unique(torch.cat([x, ng.reshape(-1)])).numel()
    for name, got, want in (("loss", loss, rl), ("grad in_weight", ga, rga), ("grad out_weight", gb, rgb)):
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        tol = dict(atol=1e-12 * scale, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-4 * scale, rtol=1e-4)
        assert_close(got, want, name=name, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(1, 1, 1, 1, False), (37, 13, 29, 1, False), (101, 70, 40, 20, False),
                                         (50, 8, 64, 5, True), (7, 33, 50, 6, True), (1000, 7, 3, 0, False)])
@pytest.mark.parametrize("sparse", [False, True])
def test_op_path_matches_float64_reference(device, device_name, dtype, v, d, n, k, dup, sparse):
    _check_op_path(device, device_name, dtype, v, d, n, k, dup, sparse)


@pytest.mark.parametrize("device", ["cpu", "cuda"], indirect=True)  # too slow emulated
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(101, 131, 67, 20, False), (7, 33, 200, 20, True), (5000, 300, 999, 5, False)])
@pytest.mark.parametrize("sparse", [False, True])
def test_op_path_matches_float64_reference_large(device, device_name, dtype, v, d, n, k, dup, sparse):
    _check_op_path(device, device_name, dtype, v, d, n, k, dup, sparse)


@pytest.mark.parametrize("device", ["cpu", "cuda"], indirect=True)  # too slow emulated
def test_op_path_float32_error_within_2x_of_torch_float32(device):
    w_in, w_out, *ids = _problem(300, 100, 500, 20, torch.float32, dup=True)
    _, ga, gb, _, _ = _op_path_grads(w_in, w_out, ids, device, sparse=True)
    _, ta, tb, _, _ = _op_path_grads(w_in, w_out, ids, device, fn=sgns_loss_reference)
    _, ra, rb, _, _ = _op_path_grads(w_in.double(), w_out.double(), ids, "cpu", fn=sgns_loss_reference)
    for name, mine, torch32, ref64 in (("in", ga, ta, ra), ("out", gb, tb, rb)):
        e_ours = (mine.double() - ref64).abs().max().item()
        e_torch = (torch32.double() - ref64).abs().max().item()
        assert e_ours <= 2 * e_torch + 1e-7, f"grad {name}: error {e_ours:.3g} vs torch float32 {e_torch:.3g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(1, 1, 1, 1, False), (37, 13, 29, 1, False), (101, 70, 40, 20, False),
                                         (7, 33, 50, 6, True), (1000, 7, 3, 0, False)])
def test_forward_op_equals_cpu_kernel(device, dtype, v, d, n, k, dup):
    # Every output of pyfast::sgns_fwd on the device against the CPU kernel body, with and without the buffers the
    # backward reads; then the backward from the device's buffers against the CPU's (densified: the CPU gives one
    # row per unique id, CUDA one per occurrence).
    w_in, w_out, c, x, ng = _problem(v, d, n, k, dtype, dup)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    cpu = sgns_module._sgns_fwd_cpu(w_in, w_out, c, x, ng, True, False, False)
    dev = torch.ops.pyfast.sgns_fwd(*(t.to(device) for t in (w_in, w_out, c, x, ng)), True, False, False)
    for name, got, want in zip(("loss", "coef", "center_rows", "in_grad_dir"), dev, cpu):
        assert_close(got.cpu(), want, name=name, **tol)
    no_backward = torch.ops.pyfast.sgns_fwd(*(t.to(device) for t in (w_in, w_out, c, x, ng)), False, False, False)
    assert no_backward[2].shape == (0, d) and no_backward[3].shape == (0, d)
    assert_close(no_backward[0].cpu(), cpu[0], name="loss without backward buffers", **tol)
    grad_loss = torch.linspace(0.5, 1.5, n, dtype=dtype)
    want = sgns_module._sgns_bwd_cpu(cpu[1], grad_loss, cpu[2], cpu[3], c, x, ng, v)
    rows = sgns_module._rows_per_occurrence(*(t.cpu() for t in dev[1:2]), grad_loss, *(t.cpu() for t in dev[2:]),
                                            c, x, ng)
    assert torch.equal(rows[0], c) and torch.equal(rows[2], torch.cat([x.unsqueeze(1), ng], 1).reshape(-1))

    def dense(ids, r):
        return torch.zeros(v, d, dtype=dtype).index_add_(0, ids, r)

    scale = max(1.0, float(want[3].abs().max())) if want[3].numel() else 1.0
    for name, got, ref in (("in", dense(rows[0], rows[1]), dense(want[0], want[1])),
                           ("out", dense(rows[2], rows[3]), dense(want[2], want[3]))):
        assert_close(got, ref, name=f"grad {name}", atol=tol["atol"] * scale * 10, rtol=tol["rtol"] * 10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(1, 1, 1, 1, False), (37, 13, 29, 1, False), (7, 33, 50, 6, True),
                                         (1000, 7, 3, 0, False)])
def test_backward_rows_op_equals_the_broadcast_multiplies_bit_for_bit(device, dtype, v, d, n, k, dup):
    # pyfast::sgns_bwd_rows, the backward of CUDA tensors and compiled graphs: one kernel on cuda / emu, torch ops on
    # the cpu; the kernel forms each product as the torch ops do, so the rows agree bit for bit, for the broadcast
    # (stride 0) upstream gradient of a mean / sum and for a strided per-pair one.
    w_in, w_out, c, x, ng = _problem(v, d, n, k, dtype, dup)
    _, coef, rows, dirs = sgns_module._sgns_fwd_cpu(w_in, w_out, c, x, ng, True, False, False)
    for grad_loss in (torch.full((1,), 0.3, dtype=dtype).expand(n), torch.linspace(0.5, 1.5, 2 * n, dtype=dtype)[::2]):
        want = sgns_module._rows_per_occurrence(coef, grad_loss, rows, dirs, c, x, ng)
        got = torch.ops.pyfast.sgns_bwd_rows(*(t.to(device) for t in (coef, grad_loss, rows, dirs, c, x, ng)))
        for name, g, w in zip(("in_ids", "in_rows", "out_ids", "out_rows"), got, want):
            assert g.device.type == device.type and torch.equal(g.cpu(), w), f"{name} (stride {grad_loss.stride()})"


def test_op_path_row_stride_slices_and_no_grad_mean(device):
    big = torch.randn(60, 40, dtype=torch.float64)
    w_in, w_out = big[:, :33], big[:, 7:40]  # row stride 40, D = 33 (not a multiple of 32 or of the SIMD width)
    _, _, *ids = _problem(60, 33, 20, 4, torch.float64, seed=4)
    want = sgns_loss_reference(w_in, w_out, *ids, reduction="none")
    on_device = [t.to(device) for t in ids]
    got = sgns_loss(w_in.to(device), w_out.to(device), *on_device, reduction="none")
    assert_close(got.cpu(), want, name="loss", atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        nograd = sgns_loss(w_in.to(device), w_out.to(device), *on_device)
    assert_close(nograd.cpu(), want.mean(), name="no-grad mean loss", atol=1e-12, rtol=1e-12)


def test_samplers_live_with_the_data_utilities():
    import pyfast.data
    import pyfast.ops

    for name in ("NoiseSampler", "sample_negatives", "skipgram_pairs"):
        with pytest.warns(DeprecationWarning, match=f"pyfast.ops.{name} moved to pyfast.data"):
            old_home = getattr(pyfast.ops, name)
        assert old_home is getattr(pyfast.data, name) is getattr(pyfast, name)
    with pytest.raises(AttributeError):
        pyfast.ops.no_such_name


def _score_sweep(scores):
    """Pair i scores scores[i] for its context and for its one negative: D = 1, center row 1, target row = score."""
    m = scores.numel()
    w_in = torch.zeros(m + 1, 1, dtype=torch.float64)
    w_in[0] = 1.0
    w_out = torch.zeros(m + 1, 1, dtype=torch.float64)
    w_out[1:, 0] = scores
    targets = torch.arange(1, m + 1)
    return w_in, w_out, torch.zeros(m, dtype=torch.int64), targets, targets.unsqueeze(1)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_float32_terms_across_the_whole_score_range(reduction):
    # The float32 kernels evaluate exp / log1p with their own SIMD polynomials: every score from -100 to 100
    # (and the edges of float's exp range) must give the float64 loss and gradients to float32 accuracy.
    scores = torch.cat([torch.linspace(-100, 100, 4001, dtype=torch.float64),
                        torch.tensor([0.0, 1e-30, -1e-30, 1e-7, -1e-7, 87.0, -87.0, 88.5, -88.5, 1e4, -1e4],
                                     dtype=torch.float64)])
    w_in, w_out, *ids = _score_sweep(scores.float().double())  # scores float32 holds exactly
    loss, ga, gb = _grads(sgns_loss, w_in.float(), w_out.float(), *ids, reduction=reduction, sparse=True)
    ref, ra, rb = _grads(sgns_loss_reference, w_in, w_out, *ids, reduction=reduction)
    assert_close(loss.double(), ref, rtol=4e-7, atol=1e-30, name="loss")
    # A target's gradient is (s(x) - 1) + s(x) (its context and its negative, terms of size <= 1.5): near x = 0
    # they cancel, so the error is held to that of the terms, not of the difference.
    assert_close(gb.double(), rb, rtol=4e-7, atol=3e-7, name="out grad")
    # The center's gradient sums all 8000 terms: float32 summation, held to 2x torch float32's own error.
    _, ta, _ = _grads(sgns_loss_reference, w_in.float(), w_out.float(), *ids, reduction=reduction)
    assert (ga.double() - ra).abs().max() <= 2 * (ta.double() - ra).abs().max() + 1e-6


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_propagate_like_torch(bad):
    w_in, w_out, *ids = _score_sweep(torch.tensor([0.5, bad, -2.0], dtype=torch.float64))
    for reduction in ("none", "mean"):
        mine = sgns_loss(w_in.float().requires_grad_(), w_out.float().requires_grad_(), *ids, reduction=reduction)
        ref = sgns_loss_reference(w_in.float(), w_out.float(), *ids, reduction=reduction)
        torch.testing.assert_close(mine.detach(), ref, equal_nan=True)


def test_sparse_gradient_is_coalesced_and_touches_only_used_rows():
    w_in, w_out, c, x, ng = _problem(500, 16, 40, 5, torch.float32)
    a = w_in.clone().requires_grad_(True)
    b = w_out.clone().requires_grad_(True)
    loss = sgns_loss(a, b, c, x, ng, sparse=True)
    ga, gb = torch.autograd.grad(loss, (a, b), retain_graph=True)
    assert ga.is_sparse and ga.is_coalesced() and gb.is_sparse and gb.is_coalesced()
    loss.backward()  # AccumulateGrad drops the flag when it takes the grad over; a hook on the weights restores it
    assert a.grad.is_sparse and a.grad.is_coalesced() and b.grad.is_sparse and b.grad.is_coalesced()
    assert torch.equal(a.grad._indices()[0], torch.unique(c))
    assert torch.equal(b.grad._indices()[0], torch.unique(torch.cat([x, ng.reshape(-1)])))


def _assert_flag_is_true(grad):
    # is_coalesced() may only be True when the indices really are sorted and unique (readers skip their own sort)
    if grad.is_coalesced():
        idx = grad._indices()[0]
        assert bool((idx[1:] > idx[:-1]).all()), "a gradient flagged coalesced has unsorted or repeated rows"


def test_coalesced_flag_is_restored_only_for_the_gradient_the_op_handed_over(monkeypatch):
    w_in, w_out, c, x, ng = _problem(300, 8, 50, 5, torch.float64)
    table_ids = torch.tensor([7, 3, 7, 250, 3])
    ref_a, ref_b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    # 1) .grad already holds an uncoalesced sparse gradient (an nn.Embedding lookup's): the sum is not ours to flag.
    ours = functools.partial(sgns_loss, sparse=True)
    for wa, wb, loss_fn in ((ref_a, ref_b, sgns_loss_reference), (a, b, ours)):
        torch.nn.functional.embedding(table_ids, wa, sparse=True).pow(2).sum().backward()
        loss_fn(wa, wb, c, x, ng).backward()
    # 2) the same weight used by the op and by a sparse lookup in one graph: autograd sums the two before accumulating.
    for wa, wb, loss_fn in ((ref_a, ref_b, sgns_loss_reference), (a, b, ours)):
        (loss_fn(wa, wb, c, x, ng) + torch.nn.functional.embedding(table_ids, wa, sparse=True).sum()).backward()
    for got, want in ((a.grad, ref_a.grad), (b.grad, ref_b.grad)):
        assert got.is_sparse
        _assert_flag_is_true(got)
        assert_close(got.to_dense(), want.to_dense() if want.is_sparse else want, atol=1e-12, rtol=1e-10)
    # 3) torch.autograd.grad (no accumulation) and a later plain step on a copy of the module keep working.
    model = SkipGramNS(300, 8)
    torch.autograd.grad(model(c, x, ng), list(model.parameters()))
    clone = copy.deepcopy(model)
    for m in (model, clone):
        m(c, x, ng).backward()
        assert m.in_embed.weight.grad.is_coalesced() and m.out_embed.weight.grad.is_coalesced()
        assert len(m.in_embed.weight._post_accumulate_grad_hooks) == 1  # registered once, whatever the calls
    # 4) the record must not make AccumulateGrad copy the gradient: .grad keeps the storage the backward filled.
    handed = []
    real_hand_over = sgns_grad.hand_over
    monkeypatch.setattr(sgns_grad, "hand_over", lambda wid, g: (handed.append(g._values().data_ptr()),
                                                                 real_hand_over(wid, g)))
    model.zero_grad()
    model(c, x, ng).backward()
    assert handed == [model.in_embed.weight.grad._values().data_ptr(), model.out_embed.weight.grad._values().data_ptr()]


def test_training_path_upstream_scale_second_backward_and_frozen_table():
    # mean / sum losses take the fused path (gradient rows built in the forward, handed over in the first backward):
    # a non-unit upstream gradient, a second backward through the same graph (recomputed) and a frozen table.
    w_in, w_out, c, x, ng = _problem(50, 8, 64, 5, torch.float64, dup=True)
    ra, rb = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    want = torch.autograd.grad(sgns_loss_reference(ra, rb, c, x, ng, reduction="sum"), (ra, rb))
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    loss = sgns_loss(a, b, c, x, ng, reduction="sum", sparse=True)
    first = torch.autograd.grad(loss * 3.0, (a, b), retain_graph=True)
    second = torch.autograd.grad(loss, (a, b))
    for got, scale in ((first, 3.0), (second, 1.0)):
        for name, g, w in (("grad in", got[0], want[0]), ("grad out", got[1], want[1])):
            assert_close(g.to_dense(), scale * w, atol=1e-12, rtol=1e-10, name=name)
    frozen = w_out.clone()  # requires_grad False: only in_weight gets a gradient
    a2 = w_in.clone().requires_grad_()
    sgns_loss(a2, frozen, c, x, ng, reduction="sum").backward()
    assert frozen.grad is None
    assert_close(a2.grad, want[0], atol=1e-12, rtol=1e-10, name="grad in (frozen out)")


def test_training_path_is_once_differentiable():
    # The fused rows carry no graph. A first-order gradient asked with create_graph=True has no history (so a
    # penalty on it cannot be differentiated), and with a differentiable upstream gradient autograd raises
    # instead of silently dropping second-order terms.
    w_in, w_out, c, x, ng = _problem(30, 8, 16, 3, torch.float64)
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    (ga,) = torch.autograd.grad(sgns_loss(a, b, c, x, ng), (a,), create_graph=True)
    assert not ga.requires_grad
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    (gs,) = torch.autograd.grad(sgns_loss(a, b, c, x, ng) * scale, (a,), create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        gs.to_dense().pow(2).sum().backward()


def test_deterministic_across_thread_counts():
    w_in, w_out, *ids = _problem(20, 24, 3000, 5, torch.float32, dup=True)
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(1)
        one = _grads(sgns_loss, w_in, w_out, *ids)
        pyfast.set_num_threads(2)
        two = _grads(sgns_loss, w_in, w_out, *ids)
    finally:
        pyfast.set_num_threads(old)
    for p, q in zip(one, two):
        assert torch.equal(p, q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_path_and_custom_op_path_give_bitwise_equal_gradients(dtype):
    """The fused training pass (a "sum" loss) and the custom ops (per-pair loss, upstream gradient 1) sum every
    gradient row in the same order (increasing pair, then target), so they agree bit for bit, also with few
    distinct ids (rows of many contributions) and D not a multiple of the SIMD width."""
    for v, d, n, k, dup in ((300, 37, 400, 5, False), (50, 24, 700, 3, True)):
        w_in, w_out, c, x, ng = _problem(v, d, n, k, dtype, dup=dup)
        grads = []
        for reduction in ("sum", "none"):
            a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
            loss = sgns_loss(a, b, c, x, ng, reduction=reduction, sparse=True)
            grads.append(torch.autograd.grad(loss.sum(), (a, b)))
        for fused, op in zip(*grads):
            assert torch.equal(fused._indices(), op._indices()) and torch.equal(fused._values(), op._values())


def test_empty_batch_gives_zero_loss_and_empty_gradients(device):
    e = torch.empty(0, dtype=torch.int64, device=device)
    ng = torch.empty(0, 5, dtype=torch.int64, device=device)
    for reduction in ("mean", "none"):
        w_in = torch.randn(10, 4, requires_grad=True, device=device)
        w_out = torch.randn(10, 4, requires_grad=True, device=device)
        loss = sgns_loss(w_in, w_out, e, e, ng, sparse=True, reduction=reduction)
        assert loss.shape == (() if reduction == "mean" else (0,)) and float(loss.detach().sum()) == 0.0
        loss.sum().backward()
        assert w_in.grad.is_sparse and w_in.grad._nnz() == 0 and w_out.grad._nnz() == 0
    w = torch.randn(10, 4, requires_grad=True, device=device)
    dense = sgns_loss(w, w, e, e, ng)
    dense.backward()
    assert float(dense) == 0.0 and torch.all(w.grad == 0)


def test_no_grad_forward_matches():
    w_in, w_out, *ids = _problem(30, 10, 20, 3, torch.float64)
    with torch.no_grad():
        a = sgns_loss(w_in, w_out, *ids)
    assert_close(a, sgns_loss_reference(w_in, w_out, *ids), atol=1e-12, rtol=1e-12, name="loss")


@pytest.mark.parametrize("bad,where", [(-1, "center"), (10, "context"), (11, "negative")])
def test_out_of_range_ids_raise_value_error(device, bad, where):
    # Checked before any row is read: in native code on the CPU, flagged by the kernel on CUDA (the first bad
    # position is reported). "mean" with a gradient takes the fused CPU path, "none" the custom op.
    w_in, w_out = torch.randn(10, 4, device=device), torch.randn(10, 4, device=device)
    c, x = torch.zeros(40, dtype=torch.int64), torch.zeros(40, dtype=torch.int64)
    ng = torch.zeros(40, 2, dtype=torch.int64)
    target = {"center": c, "context": x, "negative": ng}[where].view(-1)
    target[33] = bad
    target[1] = bad
    for reduction, grad in (("mean", True), ("none", False)):
        a, b = w_in.clone().requires_grad_(grad), w_out.clone().requires_grad_(grad)
        with pytest.raises(ValueError, match=rf"sgns_loss: {where} id {bad} at position 1 is outside \[0, 10\)"):
            sgns_loss(a, b, c.to(device), x.to(device), ng.to(device), reduction=reduction)


@pytest.mark.parametrize("device", ["cuda"], indirect=True)
def test_tensors_on_two_devices_raise(device):
    w_in, w_out, c, x, ng = _problem(17, 11, 13, 3, torch.float64, dup=True)
    with pytest.raises(RuntimeError, match="centers is on cpu but in_weight is on cuda"):
        sgns_loss(w_in.to(device), w_out.to(device), c, x.to(device), ng.to(device))


def test_bad_shapes_and_dtypes_raise_clear_errors():
    w = torch.randn(10, 4)
    i = torch.zeros(3, dtype=torch.int64)
    ng = torch.zeros(3, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="same shape"):
        sgns_loss(w, torch.randn(10, 5), i, i, ng)
    with pytest.raises(TypeError, match="same dtype"):
        sgns_loss(w, w.double(), i, i, ng)
    with pytest.raises(TypeError, match="float32 or float64"):
        sgns_loss(w.half(), w.half(), i, i, ng)
    with pytest.raises(TypeError, match="centers must be int64"):
        sgns_loss(w, w, i.int(), i, ng)
    with pytest.raises(ValueError, match="contexts must have the shape of centers"):
        sgns_loss(w, w, i, i[:2], ng)
    with pytest.raises(ValueError, match=r"negatives must be 2-D \(N, K\) with N = 3"):
        sgns_loss(w, w, i, i, ng[:2])
    with pytest.raises(ValueError, match="2-D"):
        sgns_loss(w[0], w[0], i, i, ng)
    with pytest.raises(ValueError, match="reduction"):
        sgns_loss(w, w, i, i, ng, reduction="avg")


def test_weight_row_stride_slice_without_copy():
    big = torch.randn(20, 12, dtype=torch.float64)
    w_in, w_out = big[:, :7], big[:, 5:12]  # row stride 12, D = 7
    _, _, *ids = _problem(20, 7, 15, 4, torch.float64, seed=3)
    assert_close(sgns_loss(w_in, w_out, *ids), sgns_loss_reference(w_in, w_out, *ids), atol=1e-12, rtol=1e-12,
                 name="loss")


@pytest.mark.parametrize("opt_name", ["SGD", "SparseAdam"])
def test_module_trains_like_plain_pytorch(opt_name):
    from pyfast.reference.sgns import TorchSkipGramNS

    v, d = 60, 9
    ours, theirs = SkipGramNS(v, d, sparse=True, dtype=torch.float64), TorchSkipGramNS(v, d, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():  # out_embed starts at zero (word2vec); give it values so both gradients are non-trivial
        ours.out_embed.weight.normal_()
        theirs.out_embed.weight.copy_(ours.out_embed.weight)
    make = ((lambda p: torch.optim.SGD(p, lr=0.5)) if opt_name == "SGD"
            else (lambda p: torch.optim.SparseAdam(p, lr=0.05)))
    oa, ob = make(list(ours.parameters())), make(list(theirs.parameters()))
    for step in range(4):
        _, _, *ids = _problem(v, d, 50, 5, torch.float64, dup=step % 2 == 1, seed=step)
        for model, opt in ((ours, oa), (theirs, ob)):
            opt.zero_grad()
            model(*ids).backward()
            opt.step()
    assert_close(ours.in_embed.weight, theirs.in_embed.weight, atol=1e-10, rtol=1e-10, name="in_embed")
    assert_close(ours.out_embed.weight, theirs.out_embed.weight, atol=1e-10, rtol=1e-10, name="out_embed")


def test_module_dense_mode_and_init():
    m = SkipGramNS(30, 10, sparse=False)
    assert isinstance(m.in_embed, torch.nn.Embedding) and not m.in_embed.sparse
    w_in, w_out = m.in_embed.weight.detach(), m.out_embed.weight.detach()
    assert float(w_in.abs().max()) <= 0.05 and float(w_out.abs().max()) == 0.0
    _, _, *ids = _problem(30, 10, 8, 2, torch.float32)
    m(*ids).backward()
    assert not m.in_embed.weight.grad.is_sparse and m.in_embed.weight.grad.shape == (30, 10)


def test_opcheck_forward_and_backward_ops(device, device_name):
    w_in, w_out, c, x, ng = (t.to(device) for t in _problem(17, 11, 13, 3, torch.float64, dup=True))
    for sparse in (False, True):
        torch.library.opcheck(torch.ops.pyfast.sgns_fwd.default,
                              (w_in.requires_grad_(), w_out.requires_grad_(), c, x, ng, True, sparse, sparse))
    _, coef, rows, dirs = torch.ops.pyfast.sgns_fwd(w_in, w_out, c, x, ng, True, False, False)
    torch.library.opcheck(torch.ops.pyfast.sgns_bwd_rows.default,
                          (coef, torch.rand(13, dtype=torch.float64, device=device), rows, dirs, c, x, ng),
                          test_utils=("test_schema", "test_faketensor"))  # (its id outputs have no gradient)
    if device_name == "cuda":
        return  # pyfast::sgns_bwd has a CPU kernel only (CUDA tensors take per-occurrence rows)
    _, coef, rows, dirs = torch.ops.pyfast.sgns_fwd(w_in, w_out, c, x, ng, True, False, False)
    torch.library.opcheck(torch.ops.pyfast.sgns_bwd.default, (coef, torch.rand(13, dtype=torch.float64), rows, dirs,
                                                               c, x, ng, 17),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_dense_step_matches_eager():
    w_in, w_out, *ids = _problem(40, 12, 30, 4, torch.float32, seed=5)

    def f(a, b, c, x, ng):
        return sgns_loss(a, b, c, x, ng, sparse=False)

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    a1, b1 = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    a2, b2 = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    l1, l2 = f(a1, b1, *ids), compiled(a2, b2, *ids)
    l1.backward()
    l2.backward()
    assert_close(l2, l1, atol=1e-6, rtol=1e-6, name="loss")
    assert_close(a2.grad, a1.grad, atol=1e-6, rtol=1e-6, name="grad in")
    assert_close(b2.grad, b1.grad, atol=1e-6, rtol=1e-6, name="grad out")


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_default_mode_sparse_module_compiles_without_graph_breaks(backend):
    # torch.compile's default (not fullgraph) mode gives data-dependent output sizes a graph break and falls back to
    # eager, recompiling for every batch. The compiled backward therefore uses per-occurrence rows (static sizes).
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = SkipGramNS(60, 9, dtype=torch.float64)
    with torch.no_grad():
        model.out_embed.weight.normal_()
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend=backend)
    for seed in range(3):  # same shapes, new data: no recompilation
        _, _, c, x, ng = _problem(60, 9, 41, 4, torch.float64, dup=seed == 1, seed=seed)
        for m in (model, eager):
            m.zero_grad(set_to_none=True)
        loss = compiled(c, x, ng)
        loss.backward()
        want = eager(c, x, ng)
        want.backward()
        assert_close(loss.detach(), want.detach(), atol=1e-12, rtol=1e-10, name="loss")
        for name in ("in_embed", "out_embed"):
            got, ref = getattr(model, name).weight.grad, getattr(eager, name).weight.grad
            assert got.is_sparse and got._nnz() == (41 if name == "in_embed" else 41 * 5)  # one row per occurrence
            assert_close(got.to_dense(), ref.to_dense(), atol=1e-12, rtol=1e-10, name=name)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1


# ---- noise sampler ----------------------------------------------------------------------------------------------
def test_sample_negatives_distribution_and_determinism():
    counts = torch.tensor([0.0, 1.0, 10.0, 100.0, 1000.0])
    s = sample_negatives(counts, 20000, 5, seed=7)
    assert s.shape == (20000, 5) and s.dtype == torch.int64
    assert torch.equal(s, sample_negatives(counts, 20000, 5, seed=7))
    assert not torch.equal(s, sample_negatives(counts, 20000, 5, seed=8))
    p = counts ** 0.75
    p = p / p.sum()
    freq = torch.bincount(s.reshape(-1), minlength=5).double() / s.numel()
    assert freq[0] == 0
    assert_close(freq, p.double(), atol=0.01, rtol=0.0, name="frequencies")
    # rows are keyed by (seed, row): a prefix of a bigger draw is the smaller draw, whatever the thread count
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(1)
        one = NoiseSampler(counts).sample(5000, 3, seed=1)
    finally:
        pyfast.set_num_threads(old)
    assert torch.equal(NoiseSampler(counts).sample(9000, 3, seed=1)[:5000], one)


def test_sample_negatives_bad_input():
    with pytest.raises(ValueError, match="positive entry"):
        sample_negatives(torch.zeros(4), 2, 2, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        sample_negatives(torch.tensor([1.0, -1.0]), 2, 2, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        sample_negatives(torch.ones(2, 2), 2, 2, seed=0)
    with pytest.raises(ValueError, match="k must be >= 0"):
        sample_negatives(torch.ones(3), 2, -1, seed=0)
    assert sample_negatives(torch.ones(3), 0, 4, seed=0).shape == (0, 4)


# ---- pair generator ------------------------------------------------------------------------------------------------
def _pairs_by_hand(sentences, window):
    out = []
    for s in sentences:
        for i in range(len(s)):
            for off in list(range(-window, 0)) + list(range(1, window + 1)):
                if 0 <= i + off < len(s):
                    out.append((s[i], s[i + off]))
    return out


def test_skipgram_pairs_full_window_no_subsampling():
    sentences = [[5, 6, 7, 8, 9], [1, 2], [3]]
    c, x = skipgram_pairs([torch.tensor(s) for s in sentences], 2, sample=0, shrink_window=False, seed=0)
    assert list(zip(c.tolist(), x.tolist())) == _pairs_by_hand(sentences, 2)


def test_skipgram_pairs_shrunk_window_and_subsampling():
    tokens = torch.randint(0, 50, (5000,), generator=torch.Generator().manual_seed(0))
    c, x = skipgram_pairs(tokens, 5, seed=3, sample=0)
    full = len(_pairs_by_hand([tokens.tolist()], 5))
    assert 0.5 * full < c.numel() < 0.7 * full  # E[reach] = 3 of 5: about 60% of the pairs
    c2, x2 = skipgram_pairs(tokens, 5, seed=3, sample=0)
    assert torch.equal(c, c2) and torch.equal(x, x2)
    # token 0 is made very frequent: subsampling must drop most of its occurrences
    tokens[::2] = 0
    cs, _ = skipgram_pairs(tokens, 2, sample=1e-3, seed=1, shrink_window=False)
    cn, _ = skipgram_pairs(tokens, 2, sample=0, seed=1, shrink_window=False)
    assert (cs == 0).sum() < 0.2 * (cn == 0).sum()
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(tokens, 0)


# ---- DDP ----------------------------------------------------------------------------------------------------------
def _ddp_worker(rank, world, port, sparse, result_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = SkipGramNS(40, 8, sparse=sparse)
    with torch.no_grad():
        model.out_embed.weight.normal_()
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
    for _ in range(2):
        c, x = torch.randint(0, 40, (16,), generator=g), torch.randint(0, 40, (16,), generator=g)
        ng = torch.randint(0, 40, (16, 3), generator=g)
        opt.zero_grad()
        ddp(c, x, ng).backward()
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save(gathered, result_path)
    dist.destroy_process_group()


@pytest.mark.parametrize("sparse", [True, False])
def test_ddp_two_ranks_stay_identical(tmp_path, sparse):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = str(tmp_path / "params.pt")
    mp.spawn(spawn_target, args=(_ddp_worker, 2, port, sparse, path), nprocs=2, join=True)
    a, b = torch.load(path)
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.zeros_like(a))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradient_rows_in_huge_page_mappings_behave_like_any_tensor(monkeypatch, reduction):
    # Large batches get their gradient rows from a private mapping (pyfast.ops.sgns_grad.new_rows); force that path
    # for every size here: values, accumulation over two backwards, SGD / SparseAdam / clipping and saving must not
    # care.
    monkeypatch.setattr(sgns_grad, "HUGE_ROWS_BYTES", 1)
    mapped = []
    real_mmap = sgns_grad.mmap.mmap
    monkeypatch.setattr(sgns_grad.mmap, "mmap", lambda *a, **kw: mapped.append(a[1]) or real_mmap(*a, **kw))
    w_in, w_out, c, x, ng = _problem(60, 9, 33, 4, torch.float64, dup=True)
    want = _grads(sgns_loss_reference, w_in, w_out, c, x, ng, reduction=reduction)
    got = _grads(functools.partial(sgns_loss, sparse=True), w_in, w_out, c, x, ng, reduction=reduction)
    for name, g, w in zip(("loss", "grad in", "grad out"), got, want):
        assert_close(g, w, atol=1e-12, rtol=1e-10, name=name)
    empty = sgns_loss(w_in.clone().requires_grad_(), w_out.clone().requires_grad_(), c[:0], x[:0], ng[:0],
                      reduction=reduction)
    empty.sum().backward()  # zero rows: no mapping of size 0
    for make_opt in (lambda p: torch.optim.SGD(p, lr=0.1), lambda p: torch.optim.SparseAdam(p, lr=0.01)):
        model = SkipGramNS(60, 9, reduction=reduction, dtype=torch.float64)
        ref = copy.deepcopy(model)
        opts = make_opt(list(model.parameters())), make_opt(list(ref.parameters()))
        for m, opt in zip((model, ref), opts):
            for _ in range(2):  # two backwards accumulate into .grad, then one step
                loss = m(c, x, ng) if m is model else sgns_loss_reference(
                    m.in_embed.weight, m.out_embed.weight, c, x, ng, reduction=reduction)
                loss.sum().backward()
            if m is model:
                for p in m.parameters():  # in-place scaling, as gradient clipping does (a no-op factor)
                    p.grad.mul_(1.0)
            else:
                for p in m.parameters():  # the reference's dense grads, as sparse ones for SparseAdam
                    p.grad = p.grad.to_sparse()
            opt.step()
        for a, b in zip(model.parameters(), ref.parameters()):
            assert_close(a.detach(), b.detach(), atol=1e-12, rtol=1e-10, name="weights after a step")
        buf = io.BytesIO()
        torch.save(model.in_embed.weight.grad, buf)
        buf.seek(0)
        assert torch.equal(torch.load(buf).to_dense(), model.in_embed.weight.grad.to_dense())
    assert mapped and all(nbytes > 0 for nbytes in mapped)  # the mapped path ran, never for zero rows


@pytest.mark.parametrize("ids", ["zipf", "pipeline", "uniform"])
def test_bench_cases_check_and_run_at_a_small_shape(ids):
    # The benchmark's batches (the pipeline one goes through skipgram_pairs and NoiseSampler) and its pre-timing check
    # of loss and gradients against the plain module, at a shape small enough for the test suite.
    from pyfast.bench import run_case
    from pyfast.bench.sgns import _batch, _step_case

    centers, contexts, negatives = _batch(3000, 256, 3, ids, seed=2)
    assert centers.shape == contexts.shape == (256,) and negatives.shape == (256, 3)
    for t in (centers, contexts, negatives):
        assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) < 3000
    res = run_case(_step_case(3000, 8, 256, 3, ids, repeat=1), warmup=0)
    assert set(res.median_s) == {"torch nn.Embedding(sparse)", "pyfast SkipGramNS", "pyfast sgd_step (fused)"}
