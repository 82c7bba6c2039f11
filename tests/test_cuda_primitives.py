"""The CUDA kernels' building blocks below mma.sync (csrc/common/cp_async.cuh, ldmatrix in csrc/common/mma.cuh),
through their test kernels (csrc/common/mma_check.cu): ldmatrix.x4 / .x4.trans against the PTX ISA's lane -> row
address mapping and fragment layout, and cp.async's completion rule. On the host emulator a read before the
matching wait_group must see poison, so a kernel that forgets a wait fails its tests there; a GPU gives no such
guarantee either way, so those cases run emulated only."""
import pytest
import torch

from pyfast import _native

CUDA_KERNELS = ["cuda", "emu"]


def _sync(device_name):
    if device_name == "cuda":
        torch.cuda.synchronize()


def _want_ldmatrix(tile: torch.Tensor, rows: list, trans: bool) -> torch.Tensor:
    """(32, 4) uint32 registers per the PTX ISA: matrix m is made of the shared rows named by lanes 8m .. 8m + 7;
    lane l (g = l // 4, t = l % 4) receives M[g][2t], M[g][2t + 1] (trans: M[2t][g], M[2t + 1][g]), low half
    first."""
    want = torch.zeros(32, 4, dtype=torch.int64)
    for m in range(4):
        mat = tile[rows[8 * m:8 * m + 8]].to(torch.int64) & 0xFFFF  # (8, 8): row r = lane 8m + r's row
        if trans:
            mat = mat.t()
        for lane in range(32):
            g, t = lane // 4, lane % 4
            want[lane, m] = mat[g, 2 * t] | (mat[g, 2 * t + 1] << 16)
    return want


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("order", ["identity", "shuffled"])
def test_ldmatrix_x4_layout(device, device_name, trans, order):
    # Every element distinct (its own index): any misplaced element, wrong half or wrong lane address shows.
    tile = torch.arange(32 * 8, dtype=torch.int32).reshape(32, 8).to(torch.int16)
    g = torch.Generator().manual_seed(int(trans))
    rows = list(range(32)) if order == "identity" else torch.randperm(32, generator=g).tolist()
    src = tile.to(device)
    rows_t = torch.tensor(rows, dtype=torch.int32, device=device)
    out = torch.full((32, 4), -1, dtype=torch.int32, device=device)
    _native.cuda().ldmatrix_x4_check(_native.ptr(src), _native.ptr(rows_t), _native.ptr(out), trans,
                                     _native.stream(out))
    _sync(device_name)
    got = out.cpu().to(torch.int64) & 0xFFFFFFFF
    want = _want_ldmatrix(tile, rows, trans)
    assert torch.equal(got, want), f"{int((got != want).sum())} of 128 registers differ"


def _cp_async(device, device_name, mode):
    src = torch.randint(0, 250, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(mode))
    out = torch.full((4096,), 7, dtype=torch.uint8, device=device)
    _native.cuda().cp_async_check(_native.ptr(src.to(device)), _native.ptr(out), mode, _native.stream(out))
    _sync(device_name)
    return src, out.cpu()


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_cp_async_after_wait_is_visible(device, device_name):
    src, out = _cp_async(device, device_name, 0)
    assert torch.equal(out, src)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_cp_async_zero_fill(device, device_name):
    src, out = _cp_async(device, device_name, 3)
    chunks, want = out.reshape(256, 16), src.reshape(256, 16).clone()
    want[1::2] = 0
    assert torch.equal(chunks, want)


@pytest.mark.parametrize("device", ["emu"], indirect=True)
def test_cp_async_missing_wait_reads_poison(device, device_name):
    # The source never holds 0xff (values < 250): every byte read back must be the emulator's poison.
    src, out = _cp_async(device, device_name, 1)
    assert (out == 0xFF).all(), f"{int((out != 0xFF).sum())} bytes visible before their wait"


@pytest.mark.parametrize("device", ["emu"], indirect=True)
def test_cp_async_wait_group_completes_oldest_first(device, device_name):
    src, out = _cp_async(device, device_name, 2)
    assert torch.equal(out[:2048], src[:2048]), "group 0 incomplete after wait_group 1"
    assert (out[2048:] == 0xFF).all(), "group 1 visible before its wait"
