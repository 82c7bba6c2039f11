"""What every pyfast model shares: output dataclasses, weight init, save_pretrained / from_pretrained.

A checkpoint directory holds config.json and the weights, as model.safetensors when the safetensors package is
installed, else pytorch_model.bin (torch.save); both files are written to a temp name and os.replace'd, so a crash
never leaves a half-written checkpoint. Tied weights (LM head = word embeddings) are stored once and re-tied on load.
Loading a checkpoint of one head into another (MLM -> classifier) keeps the shared encoder and reports the rest.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_save_with

try:
    import safetensors.torch as _safetensors
except ImportError:  # optional: torch.save is the fallback format
    _safetensors = None

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
TORCH_NAME = "pytorch_model.bin"


def to_key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """attention_mask (B, L), 1 = token -> key_padding_mask (B, L), True = padding; None when nothing is padded,
    so the attention kernel takes its unmasked path."""
    if attention_mask is None:
        return None
    pad = attention_mask == 0
    return pad if bool(pad.any()) else None


def check_input_ids(input_ids: torch.Tensor, vocab_size: int, max_len: int, who: str) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"{who}: input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{who}: input_ids must be int64 or int32, got {input_ids.dtype}")
    if input_ids.shape[1] > max_len:
        raise ValueError(f"{who}: sequence length {input_ids.shape[1]} exceeds the {max_len} positions of the model")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise ValueError(f"{who}: input_ids must be in [0, {vocab_size}), got range "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")


def mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labels != -100; 0 (still attached to the graph) when none is labelled, not NaN."""
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=-100)



@dataclass
class ModelOutput:
    """loss: scalar or None; logits: head output; hidden_states: the encoder's last layer (B, L, H)."""
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None

    def __getitem__(self, key):  # out["loss"] as in HF
        return getattr(self, key)


@dataclass
class BaseModelOutput(ModelOutput):
    """Encoder output. last_hidden_state (B, L, H); pooler_output (B, H) for BERT (tanh(Linear(CLS)))."""
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None


@dataclass
class BaseModelOutputWithPast(BaseModelOutput):
    """Decoder output; past_key_values: the KVCache holding every token's keys/values so far (when use_cache)."""
    past_key_values: object = None


@dataclass
class CausalLMOutputWithPast(ModelOutput):
    """Causal-LM output; past_key_values: the KVCache to pass to the next forward (when use_cache)."""
    past_key_values: object = None


@dataclass
class MaskedLMOutput(ModelOutput):
    """With sparse prediction, logits are (M, V) for the M labelled positions and masked_labels (M,) says which."""
    masked_labels: torch.Tensor | None = None


class PreTrainedModel(nn.Module):
    config_class = None
    base_model_prefix = ""      # attribute holding the encoder in head models ("bert", "transformer"); bare
                                # encoders name it too, so checkpoints move between the two
    _tied_keys: tuple = ()      # state-dict keys that alias another parameter when weights are tied

    def __init__(self, config):
        super().__init__()
        self.config = config

    # -- init ----------------------------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Head models with an LM head point its weight at the input embedding when config.tie_word_embeddings."""

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- save / load ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str, safe_serialization: bool | None = None) -> str:
        """Write config.json and the weights into `directory` (created); returns the weights path."""
        if safe_serialization and _safetensors is None:
            raise ImportError("save_pretrained(safe_serialization=True) needs the safetensors package")
        use_safetensors = _safetensors is not None if safe_serialization is None else safe_serialization
        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                 if not (self._is_tied() and k in self._tied_keys)}
        name = SAFETENSORS_NAME if use_safetensors else TORCH_NAME
        path = os.path.join(directory, name)
        if use_safetensors:
            atomic_save_with(path, lambda tmp: _safetensors.save_file(state, tmp, metadata={"format": "pt"}))
        else:
            atomic_save_with(path, lambda tmp: torch.save(state, tmp))
        stale = os.path.join(directory, TORCH_NAME if use_safetensors else SAFETENSORS_NAME)
        if os.path.exists(stale):  # never leave two weight files that disagree
            os.remove(stale)
        self.config.save(os.path.join(directory, CONFIG_NAME))
        return path

    @classmethod
    def from_pretrained(cls, directory: str, map_location="cpu", ignore_mismatched_sizes: bool = False,
                        **config_overrides):
        """Build from directory/config.json (fields overridable, e.g. num_labels=3) and load the weights.

        Encoder weights load across head types (an MLM checkpoint into a classifier); heads the checkpoint lacks
        keep their fresh init and are reported with a warning, as are checkpoint keys the model does not use.
        A weight whose shape differs from the config's is a ValueError naming the file (a config and weights that
        do not belong together), unless ignore_mismatched_sizes=True (HF's flag: such weights are re-initialised).
        """
        config = cls.config_class.load(os.path.join(directory, CONFIG_NAME), **config_overrides)
        model = cls(config)
        state = load_state_dict(directory, map_location=map_location)
        if not ignore_mismatched_sizes:
            model._check_shapes(state, directory)
        missing, unexpected = model._load_adapting_prefix(state)
        if missing or unexpected:
            warnings.warn(f"{cls.__name__}.from_pretrained({directory!r}): newly initialised {missing or 'none'}; "
                          f"unused from checkpoint {unexpected or 'none'}", stacklevel=2)
        model.tie_weights()
        model.loaded_keys_report = {"missing": missing, "unexpected": unexpected}
        return model

    def _is_tied(self) -> bool:
        return bool(getattr(self.config, "tie_word_embeddings", False))

    def _check_shapes(self, state: dict, directory: str) -> None:
        own = self.state_dict()
        prefix = self.base_model_prefix + "." if self.base_model_prefix else ""
        bad = []
        for key, value in state.items():
            for name in (key, prefix + key, key[len(prefix):] if prefix and key.startswith(prefix) else None):
                if name in own and own[name].shape != value.shape:
                    bad.append(f"{key}: file {tuple(value.shape)}, config {tuple(own[name].shape)}")
                    break
        if bad:
            weights = [n for n in (SAFETENSORS_NAME, TORCH_NAME) if os.path.exists(os.path.join(directory, n))]
            raise ValueError(f"{os.path.join(directory, weights[0] if weights else '')}: {len(bad)} weight(s) do not "
                             f"match {os.path.join(directory, CONFIG_NAME)}: {'; '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''} (pass ignore_mismatched_sizes=True to re-initialise "
                             "them)")

    def _load_adapting_prefix(self, state: dict) -> tuple[list, list]:
        own = self.state_dict()
        prefix = self.base_model_prefix + "." if self.base_model_prefix else ""
        if prefix:
            has_prefix_here = any(k.startswith(prefix) for k in own)
            has_prefix_there = any(k.startswith(prefix) for k in state)
            if has_prefix_here and not has_prefix_there:      # bare encoder checkpoint -> head model
                state = {prefix + k: v for k, v in state.items()}
            elif has_prefix_there and not has_prefix_here:    # head checkpoint -> bare encoder
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        unexpected = sorted(k for k in state if k not in usable)
        self.load_state_dict(usable, strict=False)
        tied = set(self._tied_keys) if self._is_tied() else set()
        missing = sorted(k for k in own if k not in usable and k not in tied)
        return missing, unexpected


def load_state_dict(directory: str, map_location="cpu") -> dict:
    st_path, pt_path = os.path.join(directory, SAFETENSORS_NAME), os.path.join(directory, TORCH_NAME)
    if os.path.exists(st_path):
        if _safetensors is None:
            raise ImportError(f"{st_path} needs the safetensors package to load")
        return _read_weights(st_path, lambda: _safetensors.load_file(st_path, device=str(map_location)))
    if os.path.exists(pt_path):
        return _read_weights(pt_path, lambda: torch.load(pt_path, map_location=map_location, weights_only=True))
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {TORCH_NAME} in {directory}")


def _read_weights(path: str, load) -> dict:
    # safetensors and torch.load report a truncated or garbled file without its name ("Error while deserializing
    # header", "PytorchStreamReader failed reading zip archive"): say which file it was.
    try:
        state = load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors' SafetensorError derives from Exception only
        raise ValueError(f"{path}: cannot read the weights (truncated or corrupt?): {type(exc).__name__}: {exc}") \
            from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state
