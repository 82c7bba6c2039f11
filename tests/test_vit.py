"""ViT / MAE models (shapes, gradient flow, save/load round trip, the MAE loss against a plain reference that builds
MAE's own noise-argsort masking, and that only masked patches count) and the Fashion-MNIST IDX reader (synthetic files
for every error; the real files when installed, else those tests skip)."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyfast.data.images import DEFAULT_FASHION_MNIST_ROOT, load_fashion_mnist, read_idx
from pyfast.models import (ViT, ViTConfig, ViTForImageClassification, ViTForMaskedImageModeling, ViTModel)
from pyfast.models.vit import mae_loss, patchify, unpatchify
from pyfast.ops import random_patch_mask

TINY = dict(image_size=12, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, decoder_hidden_size=8, decoder_num_attention_heads=2, decoder_intermediate_size=16)


def _images(b=3, c=1, s=12, seed=0):
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_shapes_pooling_and_gradients(pooling):
    config = ViTConfig(**TINY, pooling=pooling, num_labels=5)
    model = ViTForImageClassification(config)
    x, y = _images(), torch.tensor([0, 4, 2])
    out = model(x, labels=y)
    assert out.logits.shape == (3, 5) and out.hidden_states.shape == (3, 1 + 9, 16)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, y))
    out.loss.backward()
    for name, p in model.named_parameters():  # every parameter gets a gradient (the unused [CLS] too with "cls")
        if pooling == "mean" and name == "vit.cls_token":
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    enc = model.vit(x)
    h = enc.last_hidden_state
    want = h[:, 0] if pooling == "cls" else h[:, 1:].mean(1)
    assert torch.allclose(enc.pooler_output, want)
    assert ViT is ViTModel


def test_bad_input():
    model = ViTModel(ViTConfig(**TINY))
    with pytest.raises(ValueError, match=r"pixel_values must be \(batch, 1, 12, 12\), got \(2, 1, 8, 8\)"):
        model(torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="pixel_values must be a floating tensor, got torch.uint8"):
        model(torch.zeros(2, 1, 12, 12, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image_size 10 must be a positive multiple of patch_size 4"):
        ViTConfig(**{**TINY, "image_size": 10})
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'cls', got 'max'"):
        ViTConfig(**TINY, pooling="max")
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got 1.0"):
        ViTConfig(**TINY, mask_ratio=1.0)


def test_patchify_round_trip_and_layout():
    x = _images(2, 3, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 9, 48)
    assert torch.equal(unpatchify(p, 4, 3), x)
    # patch 4 (row 1, col 1), flattened as (p, p, C): element (i, j, c) at (i * 4 + j) * 3 + c
    assert torch.equal(p[1, 4].reshape(4, 4, 3), x[1, :, 4:8, 4:8].permute(1, 2, 0))


def test_encoder_on_visible_patches_only():
    model = ViTModel(ViTConfig(**TINY)).eval()
    x = _images()
    keep = random_patch_mask(3, 9, 0.75, seed=1).ids_keep              # (3, 2)
    out = model(x, ids_keep=keep).last_hidden_state
    assert out.shape == (3, 1 + 2, 16)
    # The same as encoding only those patches by hand: changing a masked patch's pixels changes nothing.
    y = x.clone()
    masked = [j for j in range(9) if j not in keep[0].tolist()][0]
    r, c = divmod(masked, 3)
    y[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 100.0
    assert torch.allclose(model(y, ids_keep=keep).last_hidden_state, out)


def _mae_reference(model, x, noise):
    """MAE's random_masking written as in the paper's code (argsort of uniform noise), the decoder and the loss as
    plain loops over images: loss summed over masked patches only, per-patch normalised targets."""
    config = model.config
    b, n = x.shape[0], config.num_patches
    n_keep = int(n * (1 - config.mask_ratio) + 1e-9)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = torch.ones(b, n)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    latent = model.vit(x, ids_keep=ids_keep).last_hidden_state
    total, count = 0.0, 0
    for i in range(b):
        z = model.decoder_embed(latent[i])                                  # (1 + n_keep, D)
        full = model.mask_token[0].repeat(n, 1).clone()
        full[ids_keep[i]] = z[1:]                                           # visible tokens back in patch order
        h = torch.cat([z[:1], full])[None] + model.decoder_position_embeddings
        for layer in model.decoder_layers:
            h = layer(h)
        pred = model.decoder_pred(model.decoder_norm(h))[0, 1:]
        target = patchify(x[i:i + 1], config.patch_size)[0]
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        for j in range(n):
            if mask[i, j] == 1:
                total = total + ((pred[j] - target[j]) ** 2).mean()
                count += 1
    return total / count, (ids_keep, ids_restore, mask)


def test_mae_loss_matches_reference_and_counts_masked_patches_only():
    torch.manual_seed(0)
    model = ViTForMaskedImageModeling(ViTConfig(**TINY, mask_ratio=0.5)).eval()   # 9 patches: 4 kept, 5 masked
    x = _images(4)
    noise = torch.rand(4, 9)
    want, triple = _mae_reference(model, x, noise)
    out = model(x, mask=triple)
    assert torch.allclose(out.loss, want, rtol=1e-5, atol=1e-6), (out.loss, want)
    assert torch.equal(out.mask, triple[2]) and out.logits.shape == (4, 9, 16)
    # Visible patches do not count: moving the prediction's visible entries changes nothing, masked ones do.
    target = patchify(x, 4)
    base = mae_loss(out.logits, target, out.mask)
    visible = (out.mask == 0)[:, :, None]
    assert torch.allclose(mae_loss(out.logits + 5.0 * visible, target, out.mask), base)
    assert not torch.allclose(mae_loss(out.logits + 5.0 * ~visible, target, out.mask), base)
    # Unnormalised targets: plain MSE over masked patches.
    plain = (((out.logits - target) ** 2).mean(-1) * out.mask).sum() / out.mask.sum()
    assert torch.allclose(mae_loss(out.logits, target, out.mask, norm_pix_loss=False), plain)


def test_mae_uses_the_native_patch_choice_and_trains():
    torch.manual_seed(0)
    model = ViTForMaskedImageModeling(ViTConfig(**TINY))
    x, ids = _images(6), torch.arange(10, 16)
    out = model(x, image_ids=ids, seed=3)
    want = random_patch_mask(ids, 9, 0.75, seed=3)
    assert torch.equal(out.mask, want.mask) and torch.equal(out.ids_restore, want.ids_restore)
    assert out.mask.sum(1).tolist() == [7.0] * 6
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for step in range(60):  # the same masks every step: the loss on them must fall
        loss = model(x, image_ids=ids, seed=3).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.85 * first, (first, float(loss.detach()))


def test_save_load_round_trip_and_transfer(tmp_path):
    torch.manual_seed(0)
    mae = ViTForMaskedImageModeling(ViTConfig(**TINY))
    x = _images()
    mae.save_pretrained(str(tmp_path / "mae"))
    again = ViTForMaskedImageModeling.from_pretrained(str(tmp_path / "mae"))
    m = random_patch_mask(3, 9, 0.75, seed=2)
    assert torch.equal(mae.eval()(x, mask=m).logits, again.eval()(x, mask=m).logits)
    # The MAE checkpoint's encoder loads into a classifier; the decoder is reported unused, the head new.
    with pytest.warns(UserWarning, match="newly initialised"):
        clf = ViTForImageClassification.from_pretrained(str(tmp_path / "mae"), num_labels=3)
    assert clf.loaded_keys_report["missing"] == ["classifier.bias", "classifier.weight"]
    assert any(k.startswith("decoder_") for k in clf.loaded_keys_report["unexpected"])
    assert torch.equal(clf.vit.eval()(x).last_hidden_state, mae.vit.eval()(x).last_hidden_state)
    clf.save_pretrained(str(tmp_path / "clf"))
    clf2 = ViTForImageClassification.from_pretrained(str(tmp_path / "clf"))
    assert clf2.config.num_labels == 3 and torch.equal(clf2.eval()(x).logits, clf.eval()(x).logits)


# ---- Fashion-MNIST ---------------------------------------------------------------------------------------------------

def _write_idx(path, array, type_code=0x08, gz=True, cut=0):
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    raw = raw[:len(raw) - cut]
    with (gzip.open if gz else open)(path, "wb") as fh:
        fh.write(raw)


def _fake_split(folder, split, n, labels_max=9):
    os.makedirs(folder, exist_ok=True)
    stem = {"train": "train", "test": "t10k"}[split]
    rng = np.random.default_rng(0)
    _write_idx(os.path.join(folder, f"{stem}-images-idx3-ubyte.gz"), rng.integers(0, 256, (n, 28, 28)))
    _write_idx(os.path.join(folder, f"{stem}-labels-idx1-ubyte"), rng.integers(0, labels_max + 1, n), gz=False)


def test_read_idx_and_errors(tmp_path):
    p = str(tmp_path / "a.gz")
    data = np.arange(24).reshape(2, 3, 4)
    _write_idx(p, data)
    assert np.array_equal(read_idx(p), data)
    _write_idx(p, data, cut=3)
    with pytest.raises(ValueError, match=r"holds 21 data bytes, its header \(2, 3, 4\) says 24"):
        read_idx(p)
    _write_idx(p, data, type_code=0x0D)
    with pytest.raises(ValueError, match="holds IDX type 0x0d; only unsigned bytes"):
        read_idx(p)
    with open(p, "wb") as fh:
        fh.write(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(p)
    q = str(tmp_path / "b")
    with open(q, "wb") as fh:
        fh.write(b"PK\x03\x04....")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(q)


def test_load_fashion_mnist_layouts_and_errors(tmp_path, monkeypatch):
    # The torchvision layout (root/FashionMNIST/raw), gzipped images, plain labels.
    _fake_split(str(tmp_path / "FashionMNIST" / "raw"), "test", 10000)
    images, labels = load_fashion_mnist("test", root=str(tmp_path))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    monkeypatch.setenv("PYFAST_FASHION_MNIST", str(tmp_path))
    assert load_fashion_mnist("test")[0].shape == (10000, 28, 28)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=str(tmp_path))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("val", root=str(tmp_path))
    _fake_split(str(tmp_path / "short"), "test", 100)
    with pytest.raises(ValueError, match=r"holds shape \(100, 28, 28\), expected \(10000, 28, 28\)"):
        load_fashion_mnist("test", root=str(tmp_path / "short"))
    _fake_split(str(tmp_path / "labels"), "test", 10000, labels_max=11)
    with pytest.raises(ValueError, match="holds label 11; classes are 0..9"):
        load_fashion_mnist("test", root=str(tmp_path / "labels"))


def _real_data_or_skip():
    try:
        return load_fashion_mnist("test")
    except FileNotFoundError:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist -> {DEFAULT_FASHION_MNIST_ROOT})")


def test_real_fashion_mnist():
    images, labels = _real_data_or_skip()
    assert images.shape == (10000, 28, 28)
    assert np.array_equal(np.bincount(labels), [1000] * 10)       # the test split is balanced
    assert 0.25 < images.mean() / 255 < 0.32                       # Fashion-MNIST's mean pixel is ~0.286


def test_vision_demo_quick_path_runs(tmp_path):
    """The demo section's machinery end to end on a sliver of the real data (a few steps: no accuracy claim)."""
    _real_data_or_skip()
    from pyfast.demo import vision

    s = vision.VisionSettings(hidden=16, layers=1, heads=2, mae_steps=3, mae_batch=32, finetune_steps=3,
                              finetune_batch=16, sup_steps=3, fractions=(0.1,), finetune_fractions=(0.1,),
                              train_limit=400, test_limit=200)
    lines = []
    first = vision.run(True, str(tmp_path), seeds=(0,), settings=s, parts=("mae",), log=lines.append)
    assert {r["task"] for r in first["rows"]} == {"MAE"}
    # A second part in the same folder reuses the MAE checkpoint and adds to vision.json, seed by seed.
    report = vision.run(True, str(tmp_path), seeds=(0,), settings=s, parts=("mae", "supervised"), log=lines.append)
    assert any("reusing the checkpoint" in line for line in lines)
    assert report["results"][0]["MAE/probe/0.1/pretrained"] == first["results"][0]["MAE/probe/0.1/pretrained"]
    assert {(r["task"], r["method"]) for r in report["rows"]} == {
        ("MAE", "probe"), ("MAE", "finetune"), ("classes 5-9", "probe"), ("classes 5-9", "finetune")}
    assert os.path.exists(tmp_path / "vision.json") and "| pretraining -> task |" in report["markdown"]


def test_vision_demo_skips_without_data(tmp_path):
    from pyfast.demo import vision

    lines = []
    report = vision.run(True, str(tmp_path), root=str(tmp_path / "nowhere"), log=lines.append)
    assert "apt-get install dataset-fashion-mnist" in report["skipped"] and lines[0].startswith("vision: skipped")
