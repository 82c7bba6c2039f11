"""pyfast.ops.sgns_sgd_step (the SGNS op's fused SGD step, no autograd) against what it replaces: sgns_loss +
backward + torch.optim.SGD(lr).step() with sparse gradients, and a float64 reference step (plain PyTorch loss and
autograd in float64, w - lr * grad). On cpu (the fused CPU pass + index_add_), emu (the CUDA forward and atomicAdd
apply kernels in the host emulator) and cuda. Awkward shapes (N = 1, D = 1, D = 13 / 33 / 70, K = 0 / 1, few ids
repeated many times), tied tables, strided and column-major tables, bad ids (sgns_loss's exception and no write),
argument checks."""
import pytest
import torch

from pyfast.ops import sgns_loss, sgns_sgd_step
from pyfast.reference.sgns import sgns_loss_reference
from helpers import assert_close, sgns_problem

pytestmark = pytest.mark.sanitize

LR = 0.7  # large, so a wrong or missing update is far outside float rounding


def _problem(v, d, n, k, dtype, dup=False, seed=0):
    return sgns_problem(v, d, n, k, dtype, dup, seed, scale=0.5)


def _autograd_step(w_in, w_out, ids, lr, reduction, tied=False):
    """What the step replaces, on the CPU: sgns_loss (sparse gradients) + backward + torch.optim.SGD."""
    a = torch.nn.Parameter(w_in.clone())
    b = a if tied else torch.nn.Parameter(w_out.clone())
    opt = torch.optim.SGD(list({id(p): p for p in (a, b)}.values()), lr=lr)
    opt.zero_grad()
    loss = sgns_loss(a, b, *ids, reduction=reduction, sparse=True)
    loss.backward()
    opt.step()
    return loss.detach(), a.detach(), b.detach()


def _float64_step(w_in, w_out, ids, lr, reduction, tied=False):
    """The same step from plain PyTorch in float64: the reference loss, autograd, w - lr * grad."""
    a = w_in.double().clone().requires_grad_()
    b = a if tied else w_out.double().clone().requires_grad_()
    loss = sgns_loss_reference(a, b, *ids, reduction=reduction)
    grads = torch.autograd.grad(loss, (a,) if tied else (a, b))
    with torch.no_grad():
        new_a = a - lr * grads[0]
        new_b = new_a if tied else b - lr * grads[1]
    return loss.detach(), new_a, new_b


def _tol(dtype, *tensors):
    scale = max([1.0] + [float(t.abs().max()) for t in tensors if t.numel()])
    return dict(atol=1e-12 * scale, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5 * scale, rtol=2e-5)


def _run_step(w_in, w_out, ids, device, lr, reduction, tied=False):
    a = w_in.clone().to(device)
    b = a if tied else w_out.clone().to(device)
    loss = sgns_sgd_step(a, b, *(t.to(device) for t in ids), lr=lr, reduction=reduction)
    return loss, a.cpu(), b.cpu()


SHAPES = [(1, 1, 1, 1, False), (1, 1, 1, 0, False), (37, 13, 29, 1, False), (3, 1, 40, 2, True),
          (50, 8, 64, 5, True), (7, 33, 50, 6, True), (101, 70, 40, 20, False), (1000, 7, 3, 0, False),
          (20, 64, 33, 5, False)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_step_equals_autograd_sgd_step_and_float64_reference(device, dtype, v, d, n, k, dup, reduction):
    w_in, w_out, *ids = _problem(v, d, n, k, dtype, dup)
    loss, a, b = _run_step(w_in, w_out, ids, device, LR, reduction)
    assert loss.shape == () and loss.dtype == dtype and loss.device.type == device.type
    assert not loss.requires_grad
    want = _autograd_step(w_in, w_out, ids, LR, reduction)
    ref = _float64_step(w_in, w_out, ids, LR, reduction)
    assert not torch.equal(a, w_in) and not torch.equal(b, w_out)  # the step did update something
    for label, target in (("autograd + SGD", want), ("float64 reference", ref)):
        tol = _tol(dtype, *target)
        for name, got, exp in zip(("loss", "in_weight", "out_weight"), (loss.cpu(), a, b), target):
            assert_close(got, exp, name=f"{name} vs {label}", **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_on_the_cpu_is_the_autograd_step_bit_for_bit(dtype):
    # The CPU step runs the fused pass sgns_loss trains with and the add SGD makes of its coalesced gradient.
    for v, d, n, k, dup in SHAPES:
        w_in, w_out, *ids = _problem(v, d, n, k, dtype, dup)
        loss, a, b = _run_step(w_in, w_out, ids, "cpu", LR, "mean")
        want = _autograd_step(w_in, w_out, ids, LR, "mean")
        for got, exp in zip((loss, a, b), want):
            assert torch.equal(got, exp)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tied_tables(device, dtype):
    # in_weight is out_weight (one table for both roles): every gradient still comes from the weights before the step.
    w, _, *ids = _problem(9, 13, 40, 4, dtype, dup=True)
    loss, a, b = _run_step(w, None, ids, device, LR, "mean", tied=True)
    assert torch.equal(a, b)
    for label, target in (("autograd + SGD", _autograd_step(w, w, ids, LR, "mean", tied=True)),
                          ("float64 reference", _float64_step(w, w, ids, LR, "mean", tied=True))):
        tol = _tol(dtype, *target)
        for name, got, exp in zip(("loss", "table"), (loss.cpu(), a), target):
            assert_close(got, exp, name=f"{name} vs {label}", **tol)


def test_strided_and_column_major_tables_are_updated_in_place(device):
    # A row-stride slice (D = 33 in rows of 40) goes to the kernel as it is; a column-major table is updated in a
    # row-major copy and written back. Either way the caller's tensor (and only its slice) holds the result.
    w_in, w_out, *ids = _problem(60, 33, 25, 4, torch.float64, seed=4)
    want = _float64_step(w_in, w_out, ids, LR, "mean")
    big = torch.zeros(60, 40, dtype=torch.float64, device=device)
    big[:, :33] = w_in.to(device)
    big[:, 33:] = 5.0
    col_major = w_out.t().contiguous().t().to(device)
    assert col_major.stride() == (1, 60)
    loss = sgns_sgd_step(big[:, :33], col_major, *(t.to(device) for t in ids), lr=LR)
    tol = _tol(torch.float64, *want)
    assert_close(loss.cpu(), want[0], name="loss", **tol)
    assert_close(big[:, :33].cpu(), want[1], name="in_weight (row-stride slice)", **tol)
    assert torch.all(big[:, 33:] == 5.0), "the step wrote outside the slice"
    assert_close(col_major.cpu(), want[2], name="out_weight (column-major)", **tol)


@pytest.mark.parametrize("bad,where", [(-1, "center"), (10, "context"), (11, "negative"), (2**40, "negative")])
def test_bad_ids_raise_sgns_loss_exception_and_write_nothing(device, bad, where):
    w_in, w_out = torch.randn(10, 4, device=device), torch.randn(10, 4, device=device)
    c, x = torch.zeros(40, dtype=torch.int64), torch.ones(40, dtype=torch.int64)
    ng = torch.full((40, 2), 2, dtype=torch.int64)
    target = {"center": c, "context": x, "negative": ng}[where].view(-1)
    target[33] = bad
    target[1] = bad
    ids = [t.to(device) for t in (c, x, ng)]
    msg = rf"sgns_loss: {where} id {bad} at position 1 is outside \[0, 10\)"
    with pytest.raises(ValueError, match=msg):  # what sgns_loss says for the same batch
        sgns_loss(w_in.clone().requires_grad_(), w_out.clone().requires_grad_(), *ids)
    a, b = w_in.clone(), w_out.clone()
    with pytest.raises(ValueError, match=msg):
        sgns_sgd_step(a, b, *ids, lr=LR)
    assert torch.equal(a, w_in) and torch.equal(b, w_out), "a step that raised changed the weights"


def test_empty_batch_is_a_zero_loss_and_no_update(device):
    w_in, w_out = torch.randn(10, 4, device=device), torch.randn(10, 4, device=device)
    e = torch.empty(0, dtype=torch.int64, device=device)
    a, b = w_in.clone(), w_out.clone()
    loss = sgns_sgd_step(a, b, e, e, torch.empty(0, 5, dtype=torch.int64, device=device), lr=LR)
    assert loss.shape == () and float(loss) == 0.0
    assert torch.equal(a, w_in) and torch.equal(b, w_out)


def test_parameters_no_graph_no_grad_and_the_version_counter():
    # nn.Parameters are updated in place under no_grad: no graph, .grad untouched (None stays None, a value stays),
    # and a graph that saved a table before the step refuses to backward through the changed values.
    w_in, w_out, *ids = _problem(30, 8, 20, 3, torch.float32)
    a, b = torch.nn.Parameter(w_in.clone()), torch.nn.Parameter(w_out.clone())
    b.grad = torch.ones_like(b)
    saved = (a * a).sum()  # saves a
    loss = sgns_sgd_step(a, b, *ids, lr=LR)
    assert not loss.requires_grad and loss.grad_fn is None
    assert a.grad is None and torch.equal(b.grad, torch.ones_like(b))
    assert not torch.equal(a.detach(), w_in)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


def test_argument_checks():
    w_in, w_out, c, x, ng = _problem(10, 4, 6, 2, torch.float32)
    with pytest.raises(ValueError, match="sgns_sgd_step: reduction must be 'mean' or 'sum'"):
        sgns_sgd_step(w_in, w_out, c, x, ng, lr=0.1, reduction="none")
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        sgns_sgd_step(w_in, w_out, c, x, ng, lr=-0.1)
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        sgns_sgd_step(w_in, w_out, c, x, ng, lr=float("nan"))
    with pytest.raises(TypeError, match="lr must be a number"):
        sgns_sgd_step(w_in, w_out, c, x, ng, lr="fast")
    leaf = w_in.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="in_weight is a non-leaf tensor that requires grad"):
        sgns_sgd_step(leaf * 1.0, w_out, c, x, ng, lr=0.1)
    with pytest.raises(TypeError, match="sgns_sgd_step: centers must be int64"):
        sgns_sgd_step(w_in, w_out, c.int(), x, ng, lr=0.1)
    with pytest.raises(ValueError, match="sgns_sgd_step: in_weight and out_weight must have the same shape"):
        sgns_sgd_step(w_in, w_out[:, :3], c, x, ng, lr=0.1)
    # lr = 0: the loss, no change
    a, b = w_in.clone(), w_out.clone()
    loss = sgns_sgd_step(a, b, c, x, ng, lr=0)
    assert torch.equal(a, w_in) and torch.equal(b, w_out)
    assert_close(loss, sgns_loss_reference(w_in.double(), w_out.double(), c, x, ng), atol=1e-5, rtol=1e-5,
                 name="loss at lr=0")


def test_many_steps_train_like_the_autograd_loop(device):
    # Ten steps on batches with repeated ids: the two loops stay together (no drift from a missing or doubled add).
    w_in, w_out, *_ = _problem(40, 16, 1, 1, torch.float64, seed=9)
    a, b = w_in.clone().to(device), w_out.clone().to(device)
    pa, pb = torch.nn.Parameter(w_in.clone()), torch.nn.Parameter(w_out.clone())
    opt = torch.optim.SGD([pa, pb], lr=0.5)
    for step in range(10):
        _, _, *ids = _problem(40, 16, 48, 5, torch.float64, dup=step % 3 == 0, seed=100 + step)
        got = sgns_sgd_step(a, b, *(t.to(device) for t in ids), lr=0.5)
        opt.zero_grad()
        want = sgns_loss(pa, pb, *ids, sparse=True)
        want.backward()
        opt.step()
        assert_close(got.cpu(), want.detach(), atol=1e-11, rtol=1e-11, name=f"loss at step {step}")
    assert_close(a.cpu(), pa.detach(), atol=1e-11, rtol=1e-11, name="in_weight after 10 steps")
    assert_close(b.cpu(), pb.detach(), atol=1e-11, rtol=1e-11, name="out_weight after 10 steps")


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_step_compiles_into_a_graph(backend):
    # A mutating custom op: torch.compile (fullgraph) functionalises it and writes the tables back.
    torch._dynamo.reset()
    w_in, w_out, *ids = _problem(40, 12, 30, 4, torch.float32, dup=True, seed=5)
    step = torch.compile(lambda a, b, c, x, ng: sgns_sgd_step(a, b, c, x, ng, lr=LR), backend=backend, fullgraph=True)
    a, b = w_in.clone(), w_out.clone()
    loss = step(a, b, *ids)
    for name, got, want in zip(("loss", "in_weight", "out_weight"), (loss, a, b),
                               _autograd_step(w_in, w_out, ids, LR, "mean")):
        assert_close(got, want, atol=1e-6, rtol=1e-6, name=name)


@pytest.mark.parametrize("device", ["cuda"], indirect=True)
def test_tensors_on_two_devices_raise(device):
    w_in, w_out, c, x, ng = _problem(17, 11, 13, 3, torch.float32)
    with pytest.raises(RuntimeError, match="sgns_sgd_step: centers is on cpu but in_weight is on cuda"):
        sgns_sgd_step(w_in.to(device), w_out.to(device), c, x.to(device), ng.to(device), lr=LR)


def test_opcheck(device):
    w_in, w_out, c, x, ng = (t.to(device) for t in _problem(17, 11, 13, 3, torch.float64, dup=True))
    torch.library.opcheck(torch.ops.pyfast.sgns_sgd_step.default, (w_in, w_out, c, x, ng, 0.1, 1.0 / 13),
                          test_utils=("test_schema", "test_faketensor"))


def test_module_sgd_step_is_the_module_training_step():
    # SkipGramNS.sgd_step: the module's own reduction, the same update as its autograd step with torch.optim.SGD.
    from pyfast.nn import SkipGramNS

    for reduction in ("mean", "sum"):
        fused = SkipGramNS(30, 9, reduction=reduction, dtype=torch.float64)
        with torch.no_grad():
            fused.out_embed.weight.normal_()
        plain = SkipGramNS(30, 9, reduction=reduction, dtype=torch.float64)
        plain.load_state_dict(fused.state_dict())
        opt = torch.optim.SGD(plain.parameters(), lr=LR)
        _, _, *ids = _problem(30, 9, 25, 4, torch.float64, dup=True)
        got = fused.sgd_step(*ids, lr=LR)
        want = plain(*ids)
        want.backward()
        opt.step()
        assert_close(got, want.detach(), atol=1e-12, rtol=1e-12, name=f"loss ({reduction})")
        for a, b in zip(fused.parameters(), plain.parameters()):
            assert_close(a.detach(), b.detach(), atol=1e-12, rtol=1e-12, name=f"table ({reduction})")
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        SkipGramNS(30, 9, reduction="none").sgd_step(*ids, lr=LR)
