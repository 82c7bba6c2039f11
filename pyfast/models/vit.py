"""A small Vision Transformer (pre-LayerNorm encoder on pyfast attention) and its MAE pretraining wrapper.

ViTModel: patch embedding (a stride-p convolution), a [CLS] token, learned position embeddings started at MAE's
fixed 2-D sine-cosine table, pre-LN blocks, a final LayerNorm; pooler_output is the mean of the patch tokens or the
[CLS] token (config.pooling). ViTForImageClassification adds a Linear head (HF-shaped: .loss / .logits).
ViTForMaskedImageModeling is MAE (He et al. 2021): the encoder sees only the visible patches (gathered by the
ids_keep of pyfast.ops.random_patch_mask), a light decoder gets mask tokens un-shuffled by ids_restore, and the loss
is the pixel MSE on the masked patches only (per-patch normalised targets when config.norm_pix_loss). All three
share base_model_prefix "vit", so an MAE checkpoint loads into the classifier with from_pretrained.
Limits: square images whose side is a multiple of the patch size; no interpolation of position embeddings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.attention import MultiheadSelfAttention
from ..ops.patch_masking import random_patch_mask
from .configuration import ConfigBase
from .modeling_utils import BaseModelOutput, ModelOutput, PreTrainedModel, mean_cross_entropy

__all__ = ["ViT", "ViTConfig", "ViTModel", "ViTForImageClassification", "ViTForMaskedImageModeling", "MAEOutput",
           "patchify", "unpatchify", "mae_loss"]


@dataclass
class ViTConfig(ConfigBase):
    image_size: int = 28
    patch_size: int = 4
    num_channels: int = 1
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 256
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    num_labels: int = 10
    pooling: str = "mean"                # "mean" of the patch tokens or "cls"
    # MAE's decoder and objective (used by ViTForMaskedImageModeling only).
    decoder_hidden_size: int = 64
    decoder_num_hidden_layers: int = 1
    decoder_num_attention_heads: int = 4
    decoder_intermediate_size: int = 256
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    model_type = "vit"

    def __post_init__(self):
        self._check_heads(self.hidden_size, self.num_attention_heads, None)
        self._check_heads(self.decoder_hidden_size, self.decoder_num_attention_heads, None)
        if self.patch_size < 1 or self.image_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"ViTConfig: image_size {self.image_size} must be a positive multiple of patch_size "
                             f"{self.patch_size}")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"ViTConfig: pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.num_labels <= 0 or self.num_channels <= 0:
            raise ValueError(f"ViTConfig: num_labels and num_channels must be positive, got {self.num_labels}, "
                             f"{self.num_channels}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"ViTConfig: mask_ratio must be in [0, 1), got {self.mask_ratio}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2


def sincos_position_table(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine embeddings: (1 + grid**2, dim) (row 0, the [CLS] slot, zero), half the channels
    for the row coordinate and half for the column. dim must be a multiple of 4."""
    if dim % 4:
        raise ValueError(f"sincos_position_table: dim must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))     # (dim/4,)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed(pos):  # (grid*grid,) -> (grid*grid, dim/2)
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([embed(rows), embed(cols)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float()


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, n, p*p*C), patches in row-major order, each flattened as (p, p, C) (MAE's layout)."""
    b, c, h, w = pixel_values.shape
    p = patch_size
    x = pixel_values.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """patchify's inverse for square images: (B, n, p*p*C) -> (B, C, H, W)."""
    b, n, _ = patches.shape
    g, p = int(math.isqrt(n)), patch_size
    x = patches.reshape(b, g, g, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, g * p, g * p)


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool = True) -> torch.Tensor:
    """MSE of pred against target (both (B, n, D)) averaged over the masked patches only (mask (B, n), 1 = masked).
    norm_pix_loss: each target patch normalised by its own mean and variance (MAE's better-representation option)."""
    target = target.float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)   # unbiased, as MAE's reference code
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)                 # (B, n)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)


class ViTLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, hidden: int, heads: int, inner: int, eps: float, dropout: float, attn_dropout: float):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden, eps=eps)
        self.attention = MultiheadSelfAttention(hidden, heads, bias=True, dropout=attn_dropout, causal=False)
        self.layernorm_after = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, inner)
        self.output = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):  # x: (B, L, H)
        x = x + self.dropout(self.attention(self.layernorm_before(x)))
        return x + self.dropout(self.output(F.gelu(self.intermediate(self.layernorm_after(x)))))


def _check_pixels(pixel_values: torch.Tensor, config: ViTConfig, who: str) -> None:
    want = (config.num_channels, config.image_size, config.image_size)
    if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != want:
        raise ValueError(f"{who}: pixel_values must be (batch, {want[0]}, {want[1]}, {want[2]}), got "
                         f"{tuple(pixel_values.shape)}")
    if not pixel_values.is_floating_point():
        raise TypeError(f"{who}: pixel_values must be a floating tensor, got {pixel_values.dtype}")


class ViTModel(PreTrainedModel):
    """The encoder. forward(pixel_values (B, C, S, S), ids_keep=None) -> BaseModelOutput with last_hidden_state
    (B, 1 + n', H) after the final LayerNorm ([CLS] first; n' = n, or ids_keep's width when given: only those
    patches are encoded) and pooler_output (B, H) (config.pooling)."""
    config_class = ViTConfig
    base_model_prefix = "vit"

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        h = config.hidden_size
        self.patch_embed = nn.Conv2d(config.num_channels, h, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, h))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + config.num_patches, h))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            ViTLayer(h, config.num_attention_heads, config.intermediate_size, config.layer_norm_eps,
                     config.hidden_dropout_prob, config.attention_probs_dropout_prob)
            for _ in range(config.num_hidden_layers))
        self.layernorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.post_init()

    def post_init(self) -> None:
        super().post_init()
        with torch.no_grad():
            h = self.config.hidden_size
            if h % 4 == 0:
                self.position_embeddings.copy_(sincos_position_table(h, self.config.grid_size)[None])
            else:
                nn.init.normal_(self.position_embeddings, std=self.config.initializer_range)
            nn.init.normal_(self.cls_token, std=self.config.initializer_range)
            # MAE: the patch projection initialised like a Linear layer (xavier on the flattened kernel).
            w = self.patch_embed.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(self.patch_embed.bias)

    def embed_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, n, H) patch embeddings plus their position embeddings (no [CLS])."""
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)             # (B, n, H)
        return x + self.position_embeddings[:, 1:]

    def forward(self, pixel_values, ids_keep: torch.Tensor | None = None, labels=None):
        _check_pixels(pixel_values, self.config, type(self).__name__)
        x = self.embed_patches(pixel_values)                                      # (B, n, H)
        if ids_keep is not None:
            if ids_keep.dim() != 2 or ids_keep.shape[0] != x.shape[0]:
                raise ValueError(f"{type(self).__name__}: ids_keep must be (batch, n_keep), got "
                                 f"{tuple(ids_keep.shape)}")
            x = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, x.shape[-1]))  # (B, n_keep, H)
        cls = (self.cls_token + self.position_embeddings[:, :1]).expand(x.shape[0], -1, -1)
        x = self.dropout(torch.cat([cls, x], dim=1))                              # (B, 1 + n', H)
        for layer in self.layers:
            x = layer(x)
        x = self.layernorm(x)
        pooled = x[:, 0] if self.config.pooling == "cls" else x[:, 1:].float().mean(dim=1).to(x.dtype)
        return BaseModelOutput(hidden_states=x, last_hidden_state=x, pooler_output=pooled)


class ViTForImageClassification(PreTrainedModel):
    """ViTModel -> pooler_output -> Linear(num_labels): logits (B, num_labels); cross-entropy for integer labels."""
    config_class = ViTConfig
    base_model_prefix = "vit"

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.vit = ViTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def post_init(self) -> None:
        # Only the head: the encoder initialised itself (its position table and patch projection are not the
        # generic Linear init), and re-initialising it here would undo that.
        self._init_weights(self.classifier)

    def forward(self, pixel_values, labels=None):
        out = self.vit(pixel_values)
        logits = self.classifier(out.pooler_output)
        loss = mean_cross_entropy(logits, labels.reshape(-1)) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=out.last_hidden_state)


@dataclass
class MAEOutput(ModelOutput):
    """logits: the decoder's pixel predictions (B, n, p*p*C) for every patch (the loss reads the masked ones);
    mask (B, n), 1 = masked; ids_restore (B, n); hidden_states: the encoder's output on the visible patches."""
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None


class ViTForMaskedImageModeling(PreTrainedModel):
    """MAE. forward(pixel_values, image_ids=None, seed=None, mask=None) -> MAEOutput with the masked-patch loss.

    The patch choice is pyfast.ops.random_patch_mask keyed by (seed, image_ids) (image_ids default 0..B-1; a fresh
    seed each call when seed is None), or a given PatchMask / (ids_keep, ids_restore, mask) triple."""
    config_class = ViTConfig
    base_model_prefix = "vit"

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.vit = ViTModel(config)
        d = config.decoder_hidden_size
        self.decoder_embed = nn.Linear(config.hidden_size, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        # Fixed, as in MAE: the decoder must know where each mask token sits, and nothing learns that better here.
        self.register_buffer("decoder_position_embeddings", sincos_position_table(d, config.grid_size)[None]
                             if d % 4 == 0 else torch.zeros(1, 1 + config.num_patches, d), persistent=False)
        self.decoder_layers = nn.ModuleList(
            ViTLayer(d, config.decoder_num_attention_heads, config.decoder_intermediate_size, config.layer_norm_eps,
                     0.0, 0.0)
            for _ in range(config.decoder_num_hidden_layers))
        self.decoder_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(d, config.patch_size ** 2 * config.num_channels)
        self.post_init()

    def post_init(self) -> None:
        for module in (self.decoder_embed, self.decoder_layers, self.decoder_norm, self.decoder_pred):
            module.apply(self._init_weights)
        with torch.no_grad():
            nn.init.normal_(self.mask_token, std=self.config.initializer_range)

    def forward(self, pixel_values, image_ids: torch.Tensor | None = None, seed: int | None = None, mask=None):
        config = self.config
        _check_pixels(pixel_values, config, type(self).__name__)
        b, n = pixel_values.shape[0], config.num_patches
        if mask is None:
            ids = image_ids if image_ids is not None else b
            ids_keep, ids_restore, patch_mask = random_patch_mask(ids, n, config.mask_ratio, seed=seed,
                                                                  device=pixel_values.device)
        else:
            ids_keep, ids_restore, patch_mask = mask
        latent = self.vit(pixel_values, ids_keep=ids_keep).last_hidden_state     # (B, 1 + n_keep, H)
        x = self.decoder_embed(latent)                                            # (B, 1 + n_keep, D)
        # [visible..., mask tokens...] in shuffle order, then un-shuffled to patch order by ids_restore.
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(b, n - ids_keep.shape[1], -1)], dim=1)  # (B, n, D)
        tokens = torch.gather(tokens, 1, ids_restore[:, :, None].expand(-1, -1, tokens.shape[-1]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_position_embeddings
        for layer in self.decoder_layers:
            x = layer(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]                     # (B, n, p*p*C)
        loss = mae_loss(pred, patchify(pixel_values, config.patch_size), patch_mask, config.norm_pix_loss)
        return MAEOutput(loss=loss, logits=pred, hidden_states=latent, mask=patch_mask, ids_restore=ids_restore)


ViT = ViTModel  # the short name (pyfast.models.ViT): the encoder with its pooling
