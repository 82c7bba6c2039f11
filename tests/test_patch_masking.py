"""random_patch_mask (MAE's per-image patch choice) on every device (cpu, cuda, emu) against the numpy reference,
bit for bit, so the CPU and CUDA kernels agree with each other; statistical properties with fixed seeds (exact count
per image, per-patch rate within a chi-square / binomial bound, uniform over positions), keying by (seed, image id),
ids_restore inverting the shuffle, bad input, opcheck and torch.compile of pyfast::random_patch_mask."""
import math

import numpy as np
import pytest
import torch

from pyfast import _native
from pyfast.ops import patch_masking as PM
from pyfast.ops import random_patch_mask
from pyfast.ops.patch_masking import num_masked_patches
from pyfast.reference.patch_masking import random_patch_mask_reference

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build


def _check_reference(m, image_ids, n, ratio, seed):
    n_keep = n - num_masked_patches(n, ratio)
    want = random_patch_mask_reference(image_ids, n, n_keep, seed)
    for name, got, exp in zip(("ids_keep", "ids_restore", "mask"), m, want):
        got = got.cpu().numpy()
        assert got.shape == exp.shape and got.dtype == exp.dtype, (name, got.shape, exp.shape, got.dtype)
        if not np.array_equal(got, exp):
            bad = np.argwhere(got != exp)
            raise AssertionError(f"{name}: {len(bad)} elements differ; first at {bad[0].tolist()}: got "
                                 f"{got[tuple(bad[0])]}, expected {exp[tuple(bad[0])]}")


# n: 1, a Philox block's 4 patches +- 1, MAE's 7x7 and 14x14 grids, a prime above the CUDA block's 256 threads.
@pytest.mark.parametrize("n", [1, 3, 4, 5, 49, 196, 257])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_matches_reference_bitwise(device, device_name, n, ratio):
    if num_masked_patches(n, ratio) >= n:
        pytest.skip("masks every patch (a ValueError, tested below)")
    if device_name == "emu" and n == 257 and ratio != 0.75:
        pytest.skip("too slow emulated; the other ratios cover the same code")
    image_ids = torch.tensor([0, 1, 7, 2**40 + 3, -5], device=device)
    for seed in (0, 12345, 2**64 - 1):
        _check_reference(random_patch_mask(image_ids, n, ratio, seed=seed), image_ids.tolist(), n, ratio, seed)


def test_int_batch_strided_ids_and_empty(device):
    m = random_patch_mask(3, 16, 0.75, seed=4, device=device)
    assert m.ids_keep.device.type == device.type
    _check_reference(m, [0, 1, 2], 16, 0.75, 4)
    ids = torch.arange(20, device=device)[::3]                      # strided (7,) view
    _check_reference(random_patch_mask(ids, 16, 0.75, seed=4), ids.tolist(), 16, 0.75, 4)
    ids32 = torch.tensor([5, 9], dtype=torch.int32, device=device)  # int32 ids are widened
    _check_reference(random_patch_mask(ids32, 16, 0.25, seed=4), [5, 9], 16, 0.25, 4)
    empty = random_patch_mask(torch.zeros(0, dtype=torch.int64, device=device), 16, 0.75, seed=1)
    assert [tuple(t.shape) for t in empty] == [(0, 4), (0, 16), (0, 16)]


def test_exact_count_and_restore_inverts_the_shuffle(device):
    n, ratio = 49, 0.75
    m = random_patch_mask(torch.arange(300, device=device), n, ratio, seed=99)
    keep, restore, mask = (t.cpu() for t in m)
    n_keep = n - num_masked_patches(n, ratio)
    assert n_keep == 12 and keep.shape == (300, 12)
    assert torch.equal(mask.sum(1), torch.full((300,), float(n - n_keep)))   # exactly round(n * ratio) per image
    assert torch.equal(torch.sort(restore, 1).values, torch.arange(n).expand(300, n))  # a permutation per image
    # ids_restore is argsort(ids_shuffle): gathering [kept..., masked...] by it gives patch order back.
    shuffle = torch.argsort(restore, 1)
    assert torch.equal(shuffle[:, :n_keep], keep)
    assert torch.equal(torch.gather(shuffle, 1, restore), torch.arange(n).expand(300, n))
    assert torch.equal(mask.gather(1, keep), torch.zeros(300, n_keep))       # kept patches are unmasked
    assert torch.equal(mask, (restore >= n_keep).float())


@pytest.mark.parametrize("device", ["cpu", "cuda"], indirect=True)  # 20k images: too many emulated launches
def test_each_patch_masked_with_probability_ratio(device):
    """Over 20000 images each of the 49 patches is masked ~ratio of the time: a chi-square over the patch counts
    (48 degrees of freedom; the bound is the 1 - 1e-9 quantile, so a correct kernel never fails it with this fixed
    seed) and a 6-sigma binomial bound per patch. Also masked patches are no more adjacent than chance."""
    n, ratio, images = 49, 0.75, 20000
    m = random_patch_mask(torch.arange(images, device=device), n, ratio, seed=2026)
    mask = m.mask.cpu().double()
    counts = mask.sum(0)                                      # (n,)
    expected = images * num_masked_patches(n, ratio) / n
    sigma = math.sqrt(images * (37 / 49) * (12 / 49))
    assert float((counts - expected).abs().max()) < 6 * sigma, counts
    # With an exact count per image the per-patch indicators are slightly dependent; the usual chi-square over
    # the masked counts (and the kept counts) is still a close, conservative check of uniformity.
    chi2 = float((((counts - expected) ** 2) / expected).sum() + (((counts - expected) ** 2) / (images - expected)).sum())
    assert chi2 < 110.0, chi2   # chi2(48) 1 - 1e-9 quantile ~ 110
    # Pairwise: P(patch 0 and patch 1 both masked) = 37 * 36 / (49 * 48) for a uniform 37-subset.
    both = float((mask[:, 0] * mask[:, 1]).sum()) / images
    p2 = 37 * 36 / (49 * 48)
    assert abs(both - p2) < 6 * math.sqrt(p2 * (1 - p2) / images), both


def test_keyed_by_seed_and_image_not_batch(device):
    n = 49
    a = random_patch_mask(torch.tensor([3, 8, 11], device=device), n, 0.75, seed=5)
    b = random_patch_mask(torch.tensor([11, 3], device=device), n, 0.75, seed=5)
    # The same image id gives the same row wherever it sits in the batch ...
    assert torch.equal(a.ids_restore[0], b.ids_restore[1]) and torch.equal(a.ids_restore[2], b.ids_restore[0])
    # ... different images differ, and so does the same image under another seed (49!/(12!37!) ~ 2e11 masks).
    assert not torch.equal(a.mask[0], a.mask[1]) and not torch.equal(a.mask[1], a.mask[2])
    c = random_patch_mask(torch.tensor([3, 8, 11], device=device), n, 0.75, seed=6)
    assert all(not torch.equal(a.mask[i], c.mask[i]) for i in range(3))
    same = random_patch_mask(torch.tensor([3, 8, 11], device=device), n, 0.75, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, same))
    f1, f2 = random_patch_mask(4, n, 0.75, device=device), random_patch_mask(4, n, 0.75, device=device)
    assert not torch.equal(f1.mask, f2.mask)  # seed=None draws a fresh seed


def test_bad_input(device):
    ids = torch.arange(4, device=device)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got 1.0"):
        random_patch_mask(ids, 49, 1.0, seed=1)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got -0.1"):
        random_patch_mask(ids, 49, -0.1, seed=1)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got nan"):
        random_patch_mask(ids, 49, float("nan"), seed=1)
    with pytest.raises(TypeError, match="mask_ratio must be a float in \\[0, 1\\), got str"):
        random_patch_mask(ids, 49, "0.75", seed=1)
    with pytest.raises(ValueError, match=r"n_patches must be in \[1, 2\*\*31\), got 0"):
        random_patch_mask(ids, 0, 0.5, seed=1)
    with pytest.raises(TypeError, match="n_patches must be an int, got float"):
        random_patch_mask(ids, 49.0, 0.5, seed=1)
    with pytest.raises(ValueError, match="mask_ratio 0.9 masks all 2 patches; at least one must stay visible"):
        random_patch_mask(ids, 2, 0.9, seed=1)
    with pytest.raises(TypeError, match="image_ids must be an integer tensor, got torch.float32"):
        random_patch_mask(ids.float(), 49, 0.75, seed=1)
    with pytest.raises(TypeError, match="image_ids must be an integer tensor, got torch.bool"):
        random_patch_mask(ids > 1, 49, 0.75, seed=1)
    with pytest.raises(ValueError, match=r"image_ids must be \(B,\), got shape \(2, 2\)"):
        random_patch_mask(ids.reshape(2, 2), 49, 0.75, seed=1)
    with pytest.raises(TypeError, match="image_ids must be a \\(B,\\) integer tensor or an int, got list"):
        random_patch_mask([0, 1], 49, 0.75, seed=1)
    with pytest.raises(ValueError, match="the batch size must be >= 0, got -1"):
        random_patch_mask(-1, 49, 0.75, seed=1)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        random_patch_mask(ids, 49, 0.75, seed=-1)


def test_native_checks_sizes():
    """The kernel's own argument checks (the Python layer never passes these): a ValueError naming the op."""
    native = _native.cpu()
    ids = torch.arange(2)
    keep, restore, mask = torch.empty(2, 1, dtype=torch.int64), torch.empty(2, 4, dtype=torch.int64), torch.empty(2, 4)
    p = PM._pack(native, ids, 4, 5, 0, keep, restore, mask)
    with pytest.raises(ValueError, match=r"random_patch_mask: n_keep must be in \[0, n_patches\], got 5"):
        native.random_patch_mask(p)
    p = PM._pack(native, ids, 0, 0, 0, keep, restore, mask)
    with pytest.raises(ValueError, match=r"random_patch_mask: n_patches must be in \[1, 2\*\*31\), got 0"):
        native.random_patch_mask(p)


@pytest.mark.parametrize("seed", [0, -1, 2**62])
def test_opcheck(device, seed):
    ids = torch.tensor([0, 4, 9], device=device)
    torch.library.opcheck(torch.ops.pyfast.random_patch_mask.default, (ids, 49, 12, seed))


def test_op_seed_is_the_uint64_reinterpreted():
    ids = torch.arange(3)
    got = torch.ops.pyfast.random_patch_mask(ids, 16, 4, -1)
    want = random_patch_mask(ids, 16, 0.75, seed=2**64 - 1)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_cuda_body_without_a_cuda_build_raises(monkeypatch):
    (op, _cpu_body, cuda_body), = PM.KERNELS
    monkeypatch.setattr(_native, "_cuda_module", None)
    monkeypatch.setattr(_native, "_cuda_import_error", "No module named 'pyfast._C_cuda'")
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        cuda_body(torch.arange(2), 16, 4, 0)


@pytest.mark.parametrize("device", ["cpu"], indirect=True)
def test_torch_compile_fullgraph(device):
    def masked_mean(x, ids):
        keep, restore, mask = torch.ops.pyfast.random_patch_mask(ids, x.shape[1], 4, 3)
        visible = torch.gather(x, 1, keep[:, :, None].expand(-1, -1, x.shape[2]))
        return visible.mean(), mask.sum()

    x, ids = torch.randn(5, 16, 8), torch.arange(5)
    compiled = torch.compile(masked_mean, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(x, ids), masked_mean(x, ids)):
        assert torch.equal(a, b)
