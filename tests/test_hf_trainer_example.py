"""examples/hf_trainer_mlm.py runs HF's Trainer on pyfast's attention and collator for a few steps and saves."""
from __future__ import annotations

import importlib.util
import math
import os

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # HF's Trainer requires it

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "hf_trainer_mlm.py")


def test_hf_trainer_example_trains_and_saves(tmp_path):
    spec = importlib.util.spec_from_file_location("hf_trainer_mlm", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = str(tmp_path / "run")
    result = example.main(["--max-steps", "30", "--output-dir", out, "--paragraphs", "600", "--vocab-size", "800",
                           "--batch-size", "8", "--hidden", "32"])
    losses = result["losses"]
    assert len(losses) >= 3 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]  # 30 steps from random weights: the MLM loss falls from ~log(vocab)
    from transformers import AutoModelForMaskedLM

    assert os.path.exists(os.path.join(out, "model.safetensors"))
    assert os.path.exists(os.path.join(out, "tokenizer.json"))
    reloaded = AutoModelForMaskedLM.from_pretrained(out, attn_implementation="pyfast")
    assert reloaded.config._attn_implementation == "pyfast"
