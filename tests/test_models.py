"""Tests for pyfast.models (BERT, GPT, heads, save/load), pooling, word2vec transfer, the tokenizer wrapper, DDP
(2 gloo processes) and the runnable examples / demo (marked slow)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_close, spawn_target
from pyfast.models import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                           BertModel, GPTConfig, GPTLMHeadModel, GPTModel, WordPieceTokenizer)
from pyfast.ops.masking import mask_tokens
from pyfast.nn import CLSPooling, MeanPooling, embedding_from_word2vec, mean_pooling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, PAD, MASK = 37, 0, 4  # tiny vocabulary: 0..4 special ([PAD],[UNK],[CLS],[SEP],[MASK]), 5..36 words


def tiny_bert(**kw):
    cfg = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(kw)
    return BertConfig(**cfg)


def tiny_gpt(**kw):
    cfg = dict(vocab_size=V, n_positions=24, n_embd=32, n_layer=2, n_head=4, dropout=0.0)
    cfg.update(kw)
    return GPTConfig(**cfg)


def patterned_corpus(n_rows, length, seed=0):
    """Rows that continue a random start with a fixed rule (next = 5 + (prev - 5 + 3) % 32): learnable in a few
    dozen steps by both an MLM and a causal LM, unlike uniform noise."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(5, V, (n_rows, 1), generator=gen)
    offsets = torch.arange(length) * 3
    return 5 + (start - 5 + offsets) % 32


# ---- shapes and -100 --------------------------------------------------------------------------------------------
def test_bert_heads_shapes():
    cfg = tiny_bert(num_labels=3)
    ids = torch.randint(5, V, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    out = BertModel(cfg)(ids, attention_mask=mask)
    assert out.last_hidden_state.shape == (2, 11, 32) and out.pooler_output.shape == (2, 32)
    assert out.hidden_states is out.last_hidden_state
    mlm = BertForMaskedLM(cfg)
    assert mlm(ids).logits.shape == (2, 11, V)
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 1], labels[1, 5] = 7, 8, 9
    sparse = mlm(ids, attention_mask=mask, labels=labels)
    assert sparse.logits.shape == (3, V) and sparse.masked_labels.tolist() == [7, 8, 9]
    seq = BertForSequenceClassification(cfg)(ids, attention_mask=mask, labels=torch.tensor([0, 2]))
    assert seq.logits.shape == (2, 3) and seq.loss.dim() == 0 and seq.hidden_states.shape == (2, 11, 32)
    tok = BertForTokenClassification(cfg)(ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    assert tok.logits.shape == (2, 11, 3) and tok.loss is None


def test_gpt_heads_shapes_and_gqa():
    ids = torch.randint(5, V, (3, 9))
    assert GPTModel(tiny_gpt())(ids).last_hidden_state.shape == (3, 9, 32)
    model = GPTLMHeadModel(tiny_gpt(n_kv_head=2))
    out = model(ids, labels=ids)
    assert out.logits.shape == (3, 9, V) and out.loss.dim() == 0
    assert out["loss"] is out.loss


def test_mlm_loss_ignores_minus_100_sparse_and_dense_agree():
    ids = torch.randint(5, V, (2, 10))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 9] = ids[0, 2], ids[1, 9]
    sparse_model = BertForMaskedLM(tiny_bert(sparse_prediction=True)).eval()
    dense_model = BertForMaskedLM(tiny_bert(sparse_prediction=False)).eval()
    dense_model.load_state_dict(sparse_model.state_dict())
    sparse, dense = sparse_model(ids, labels=labels), dense_model(ids, labels=labels)
    full_logits = sparse_model(ids).logits
    expected = F.cross_entropy(torch.stack([full_logits[0, 2], full_logits[1, 9]]), torch.stack([ids[0, 2], ids[1, 9]]))
    assert_close(sparse.loss, expected, atol=1e-5, rtol=1e-5, name="sparse MLM loss")
    assert_close(dense.loss, expected, atol=1e-5, rtol=1e-5, name="dense MLM loss")
    # Labels elsewhere changed to other -100 patterns of the same chosen positions: same loss.
    assert_close(sparse_model(ids, labels=labels.clone()).loss, expected, atol=1e-5, rtol=1e-5, name="repeat")


def test_all_ignored_labels_give_zero_loss_with_a_graph():
    model = BertForMaskedLM(tiny_bert())
    ids = torch.randint(5, V, (2, 6))
    loss = model(ids, labels=torch.full_like(ids, -100)).loss
    assert loss.item() == 0.0
    loss.backward()  # still differentiable: a DDP step with no masked token on one rank must not break


def test_causal_lm_labels_are_shifted_inside_and_minus_100_ignored():
    model = GPTLMHeadModel(tiny_gpt()).eval()
    ids = torch.randint(5, V, (2, 8))
    labels = ids.clone()
    labels[0, 3] = -100
    labels[1, 6:] = -100
    out = model(ids, labels=labels)
    logits, targets = out.logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert_close(out.loss, expected, atol=1e-5, rtol=1e-5, name="causal LM loss")


def test_token_classification_ignores_minus_100():
    model = BertForTokenClassification(tiny_bert(num_labels=4)).eval()
    ids = torch.randint(5, V, (2, 7))
    labels = torch.randint(0, 4, (2, 7))
    labels[:, 0] = -100
    out = model(ids, labels=labels)
    keep = labels.flatten() != -100
    expected = F.cross_entropy(out.logits.reshape(-1, 4)[keep], labels.flatten()[keep])
    assert_close(out.loss, expected, atol=1e-5, rtol=1e-5, name="token classification loss")


def test_sequence_classification_loss_kinds():
    ids = torch.randint(5, V, (3, 5))
    reg = BertForSequenceClassification(tiny_bert(num_labels=1)).eval()
    out = reg(ids, labels=torch.tensor([0.5, -1.0, 2.0]))
    assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), torch.tensor([0.5, -1.0, 2.0])), atol=1e-6, rtol=1e-6)
    multi = BertForSequenceClassification(tiny_bert(num_labels=3)).eval()
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out = multi(ids, labels=targets)
    assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets), atol=1e-6, rtol=1e-6)
    single = multi(ids, labels=torch.tensor([2, -100, 0]))
    assert_close(single.loss, F.cross_entropy(single.logits[[0, 2]], torch.tensor([2, 0])), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("pooling,pre_norm", [("cls", False), ("mean", False), ("mean", True)])
def test_padding_does_not_change_real_positions(pooling, pre_norm):
    """A padded row gives the same outputs at its real tokens as the unpadded row (the mask reaches attention)."""
    model = BertForSequenceClassification(tiny_bert(classifier_pooling=pooling, pre_norm=pre_norm)).eval()
    short = torch.randint(5, V, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 5 + [0] * 4])
    a, b = model(short), model(padded, attention_mask=mask)
    assert_close(b.hidden_states[:, :5], a.hidden_states, atol=1e-5, rtol=1e-5, name="hidden at real tokens")
    assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5, name="logits")
    gpt = GPTLMHeadModel(tiny_gpt()).eval()
    assert_close(gpt(padded, attention_mask=mask).logits[:, :5], gpt(short).logits, atol=1e-5, rtol=1e-5,
                 name="gpt logits at real tokens")


def test_bert_pre_norm_blocks_compose_as_pre_ln():
    """config.pre_norm: each block is x + attn(LN1(x)), then x + mlp(LN2(x)), and one LayerNorm closes the stack
    (float32: pyfast attention has no float64 path; the same ops in the same order agree to rounding);
    the default stays the paper's post-LN (no final LayerNorm), so older checkpoints load unchanged."""
    torch.manual_seed(0)
    ids = torch.randint(5, V, (2, 7))
    pre = BertModel(tiny_bert(pre_norm=True)).eval()
    for p in pre.parameters():  # LayerNorms start at (1, 0): perturb them so a swapped norm cannot go unnoticed
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    x = pre.embeddings(ids)
    for layer in pre.layers:
        x = x + layer.attention(layer.attention_norm(x))
        x = x + layer.output(F.gelu(layer.intermediate(layer.output_norm(x))))
    assert_close(pre(ids).last_hidden_state, pre.final_norm(x), atol=1e-6, rtol=1e-6, name="pre-LN stack")
    post = BertModel(tiny_bert()).eval()
    assert post.final_norm is None and "final_norm.weight" not in post.state_dict()
    y = post.embeddings(ids)
    for layer in post.layers:
        y = layer.attention_norm(y + layer.attention(y))
        y = layer.output_norm(y + layer.output(F.gelu(layer.intermediate(y))))
    assert_close(post(ids).last_hidden_state, y, atol=1e-6, rtol=1e-6, name="post-LN stack")


def test_bert_pre_norm_survives_save_and_load_and_learns(tmp_path):
    model = BertForMaskedLM(tiny_bert(pre_norm=True)).eval()
    model.save_pretrained(str(tmp_path))
    loaded = BertForMaskedLM.from_pretrained(str(tmp_path)).eval()
    assert loaded.config.pre_norm and loaded.bert.final_norm is not None
    ids = torch.randint(5, V, (2, 6))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    with pytest.warns(UserWarning, match="newly initialised"):
        clf = BertForSequenceClassification.from_pretrained(str(tmp_path), num_labels=2)
    assert torch.equal(clf.bert.final_norm.weight, model.bert.final_norm.weight)
    corpus = patterned_corpus(256, 16)
    corpus[:, 0] = 2
    model = BertForMaskedLM(tiny_bert(pre_norm=True))

    def batch(step):
        rows = corpus[(step * 32) % 256:(step * 32) % 256 + 32]
        masked, labels = mask_tokens(rows, mask_token_id=MASK, vocab_size=V, special_token_ids=[0, 1, 2, 3, 4],
                                     mlm_probability=0.15, seed=step)
        return {"input_ids": masked, "labels": labels}

    losses = _train(model, batch, 250)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, f"pre-LN MLM loss did not fall enough: {first:.3f} -> {last:.3f}"


def test_causal_model_does_not_see_the_future():
    model = GPTLMHeadModel(tiny_gpt()).eval()
    ids = torch.randint(5, V, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = 5 + (changed[0, 6:] - 4) % 32
    assert_close(model(changed).logits[:, :6], model(ids).logits[:, :6], atol=1e-6, rtol=1e-6, name="prefix logits")


def test_bad_inputs_raise_clear_errors():
    model = BertForMaskedLM(tiny_bert())
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 37\)"):
        model(torch.tensor([[1, 2, 37]]))
    with pytest.raises(ValueError, match="exceeds the 24 positions"):
        model(torch.ones(1, 25, dtype=torch.long))
    with pytest.raises(TypeError, match="int64 or int32"):
        model(torch.ones(1, 3))
    with pytest.raises(ValueError, match="labels shape"):
        model(torch.ones(2, 3, dtype=torch.long), labels=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of the number of heads"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="num_kv_heads 3 must divide"):
        GPTConfig(n_embd=32, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="unknown config keys"):
        BertConfig.from_dict({"hidden_sise": 3})
    with pytest.raises(ValueError, match="max_new_tokens"):
        GPTLMHeadModel(tiny_gpt()).generate(torch.ones(1, 2, dtype=torch.long), max_new_tokens=-1)


# ---- learning ---------------------------------------------------------------------------------------------------
def _train(model, make_batch, steps, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss = model(**make_batch(step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bert_mlm_loss_decreases_on_a_tiny_corpus():
    corpus = patterned_corpus(256, 16)
    corpus[:, 0] = 2  # [CLS]
    model = BertForMaskedLM(tiny_bert())

    def batch(step):
        rows = corpus[(step * 32) % 256:(step * 32) % 256 + 32]
        masked, labels = mask_tokens(rows, mask_token_id=MASK, vocab_size=V, special_token_ids=[0, 1, 2, 3, 4],
                                     mlm_probability=0.15, seed=step)
        return {"input_ids": masked, "labels": labels}

    losses = _train(model, batch, 250)  # post-LN BERT sits on the unigram plateau for ~100 steps before it drops
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, f"MLM loss did not fall enough: {first:.3f} -> {last:.3f}"


def test_gpt_loss_decreases_and_greedy_generation_follows_the_pattern():
    corpus = patterned_corpus(256, 16)
    model = GPTLMHeadModel(tiny_gpt())
    losses = _train(model, lambda s: {"input_ids": corpus[(s * 32) % 256:(s * 32) % 256 + 32],
                                      "labels": corpus[(s * 32) % 256:(s * 32) % 256 + 32]}, 80)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.3 * first, f"causal LM loss did not fall enough: {first:.3f} -> {last:.3f}"
    prompt = patterned_corpus(2, 4, seed=5)
    out = model.generate(prompt, max_new_tokens=8)
    assert out.shape == (2, 12)
    assert torch.equal(out, patterned_corpus(2, 12, seed=5)), f"greedy continuation {out.tolist()}"
    sampled = model.generate(prompt, max_new_tokens=5, do_sample=True, top_k=3, seed=1)
    assert torch.equal(sampled, model.generate(prompt, max_new_tokens=5, do_sample=True, top_k=3, seed=1))


def test_generate_stops_at_eos():
    """A head that always prefers token 3: generation ends right after the first eos."""
    model = GPTLMHeadModel(tiny_gpt(eos_token_id=3, tie_word_embeddings=False)).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[3] = 1.0               # logit_3 = sum(hidden) = n_embd * ln_f.bias (LN output sums to 0)
        model.transformer.ln_f.bias.fill_(1.0)
    out = model.generate(torch.tensor([[5, 6], [7, 8]]), max_new_tokens=10)
    assert out.tolist() == [[5, 6, 3], [7, 8, 3]]
    assert model.generate(torch.tensor([[5, 6]]), max_new_tokens=4, eos_token_id=9).shape == (1, 6)


# ---- save / load ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("safe", [False, True])
def test_save_pretrained_round_trip_and_transfer_between_heads(tmp_path, safe):
    if safe:
        pytest.importorskip("safetensors")
    model = BertForMaskedLM(tiny_bert()).eval()
    path = model.save_pretrained(str(tmp_path), safe_serialization=safe)
    assert os.path.basename(path) == ("model.safetensors" if safe else "pytorch_model.bin")
    assert sorted(os.listdir(tmp_path)) == sorted(["config.json", os.path.basename(path)])  # no temp files left
    loaded = BertForMaskedLM.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(5, V, (2, 6))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert loaded.lm_head.decoder.weight is loaded.bert.embeddings.word_embeddings.weight  # re-tied
    with pytest.warns(UserWarning, match="newly initialised"):
        clf = BertForSequenceClassification.from_pretrained(str(tmp_path), num_labels=5)
    assert clf.config.num_labels == 5
    assert torch.equal(clf.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    assert "classifier.weight" in clf.loaded_keys_report["missing"]
    with pytest.warns(UserWarning, match=r"newly initialised \['pooler.bias', 'pooler.weight'\]"):
        encoder = BertModel.from_pretrained(str(tmp_path))  # head checkpoint -> bare encoder: prefix stripped
    assert torch.equal(encoder.layers[0].output.weight, model.bert.layers[0].output.weight)


def test_gpt_save_load_and_switching_formats_leaves_one_weight_file(tmp_path):
    model = GPTLMHeadModel(tiny_gpt()).eval()
    model.save_pretrained(str(tmp_path), safe_serialization=False)
    try:
        import safetensors  # noqa: F401

        model.save_pretrained(str(tmp_path), safe_serialization=True)
        assert not os.path.exists(tmp_path / "pytorch_model.bin")
    except ImportError:
        pass
    loaded = GPTLMHeadModel.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(5, V, (1, 7))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    with pytest.raises(ValueError, match="holds a 'gpt' config"):
        BertModel.from_pretrained(str(tmp_path))


def test_checkpoint_swap_is_atomic(tmp_path):
    from pyfast.models.training import save_checkpoint

    model = GPTLMHeadModel(tiny_gpt())
    target = str(tmp_path / "ckpt")
    save_checkpoint(model, target, step=1)
    save_checkpoint(model, target, step=2)  # replaces a non-empty directory
    assert torch.load(os.path.join(target, "trainer_state.pt"))["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temp or old directories left behind


# ---- pooling ----------------------------------------------------------------------------------------------------
def test_mean_pooling_matches_sentence_transformers_and_accumulates_in_fp32():
    emb = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    expected = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    assert_close(MeanPooling()(emb, mask), expected, atol=1e-6, rtol=1e-6, name="mean pooling")
    assert torch.equal(MeanPooling()(emb, mask)[2], torch.zeros(4))  # no tokens -> zeros, not NaN
    assert_close(mean_pooling(emb), emb.mean(1), atol=1e-6, rtol=1e-6, name="no mask")
    assert torch.equal(CLSPooling()(emb, mask), emb[:, 0])
    # bf16 input: summing 4096 values of 1.0 + 2**-8 in bf16 would stall at 256; fp32 accumulation does not.
    long = torch.full((1, 4096, 1), 1.0 + 2**-8, dtype=torch.bfloat16)
    pooled = mean_pooling(long, torch.ones(1, 4096))
    assert pooled.dtype == torch.bfloat16 and abs(pooled.float().item() - (1.0 + 2**-8)) < 1e-2
    with pytest.raises(ValueError, match="attention_mask shape"):
        mean_pooling(emb, mask[:, :3])


# ---- transfer from word2vec -------------------------------------------------------------------------------------
def test_embedding_from_word2vec_counts_and_rows():
    vectors = {"the": [1.0, 2.0, 3.0], "lady": [0.5, -1.0, 0.0], "house": [3.0, 3.0, -3.0]}
    vocab = ["[PAD]", "the", "Lady", "##ing", "house", "carriage"]
    emb, report = embedding_from_word2vec(vectors, vocab, freeze=True, padding_idx=0, seed=3)
    assert (report.found, report.unknown) == (3, 2)
    assert report.unknown_tokens == ["##ing", "carriage"]
    assert abs(report.coverage - 0.6) < 1e-12
    assert emb.weight.shape == (6, 3) and not emb.weight.requires_grad and emb.padding_idx == 0
    assert torch.equal(emb.weight[0], torch.zeros(3))
    assert torch.equal(emb.weight[1], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(emb.weight[2], torch.tensor([0.5, -1.0, 0.0]))  # matched through its lower-case form
    assert emb.weight[3].abs().sum() > 0 and not torch.equal(emb.weight[3], emb.weight[5])
    again, _ = embedding_from_word2vec(vectors, vocab, freeze=False, padding_idx=0, seed=3)
    assert again.weight.requires_grad and torch.equal(again.weight, emb.weight)  # seeded: reproducible


def test_embedding_from_word2vec_accepts_keyed_vectors_and_dict_vocab():
    class FakeKeyedVectors:
        key_to_index = {"a": 0, "b": 1}
        vectors = [[1.0, 0.0], [0.0, 1.0]]

    class FakeModel:
        wv = FakeKeyedVectors()

    emb, report = embedding_from_word2vec(FakeModel(), {"b": 0, "zz": 1, "a": 2})
    assert (report.found, report.unknown) == (2, 1)
    assert torch.equal(emb.weight[0], torch.tensor([0.0, 1.0])) and torch.equal(emb.weight[2], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="ids must be exactly"):
        embedding_from_word2vec(FakeModel(), {"a": 0, "b": 2})
    with pytest.raises(TypeError, match="vectors must be"):
        embedding_from_word2vec([1, 2], ["a"])


def test_transfer_with_real_word2vec_into_a_model():
    from pyfast.word2vec import Word2Vec

    sentences = [["the", "lady", "walked", "to", "the", "house"], ["the", "house", "was", "quiet"]] * 20
    try:
        w2v = Word2Vec(sentences=sentences, vector_size=32, window=2, min_count=1, sg=1, epochs=2, workers=1, seed=1)
    except ImportError as exc:
        pytest.skip(str(exc))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "lady", "house", "carriage"]
    emb, report = embedding_from_word2vec(w2v, vocab, freeze=False, padding_idx=0)
    assert (report.found, report.unknown) == (3, 5)
    assert torch.allclose(emb.weight[5], torch.tensor(w2v.wv["the"], dtype=torch.float32))
    model = BertForSequenceClassification(tiny_bert(vocab_size=len(vocab)))
    model.bert.set_input_embeddings(emb)
    assert model(torch.tensor([[2, 5, 6, 3]])).logits.shape == (1, 2)


# ---- tokenizer --------------------------------------------------------------------------------------------------
TEXT = ["It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
        "want of a wife."] * 30 + ["However little known the feelings or views of such a man may be."] * 30


def _check_tokenizer(tok):
    ids = tok.encode("a single man.")
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.get_special_tokens_mask(ids) == [1] + [0] * (len(ids) - 2) + [1]
    assert set(tok.all_special_ids) == {tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
                                        tok.mask_token_id}
    assert "single" in tok.decode(ids)
    batch = tok(["a man", "a wife of a man"], truncation=True, max_length=4)
    assert [len(x) for x in batch["input_ids"]] == [4, 4] and batch["input_ids"][1][-1] == tok.sep_token_id


def test_wordpiece_tokenizer_trains_offline_and_round_trips(tmp_path):
    pytest.importorskip("tokenizers")
    tok = WordPieceTokenizer.train(TEXT, vocab_size=120, min_frequency=1)
    assert tok.kind.startswith("WordPiece") and len(tok) <= 120
    _check_tokenizer(tok)
    tok.save(str(tmp_path))
    again = WordPieceTokenizer.from_file(str(tmp_path))
    assert again.vocab == tok.vocab and again.encode("a wife") == tok.encode("a wife")


def test_word_level_tokenizer_without_hf_tokenizers(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers -> ImportError
    tok = WordPieceTokenizer.train(TEXT, vocab_size=30, min_frequency=1)
    assert tok.kind.startswith("word-level") and len(tok) == 30
    _check_tokenizer(tok)
    assert tok.encode("zebra", add_special_tokens=False) == [tok.unk_token_id]


# ---- distributed ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, result_path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from torch.nn.parallel import DistributedDataParallel

    from pyfast.models.training import cleanup_distributed, max_parameter_difference, setup_distributed

    dist = setup_distributed("cpu")
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert())
    before = model.bert.layers[0].output.weight.detach().clone()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    corpus = patterned_corpus(64, 12, seed=rank)  # every rank its own data and masks
    for step in range(4):
        masked, labels = mask_tokens(corpus, mask_token_id=MASK, vocab_size=V, special_token_ids=[0, 1, 2, 3, 4],
                                     seed=100 * rank + step)
        loss = ddp(masked, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    diff = max_parameter_difference(model)
    moved = float((model.bert.layers[0].output.weight - before).abs().max())
    if rank == 0:
        with open(result_path, "w") as fh:
            fh.write(f"{diff} {moved} {dist.world_size}")
    cleanup_distributed()


def test_ddp_two_gloo_processes_end_with_identical_parameters(tmp_path):
    import torch.multiprocessing as mp

    result = tmp_path / "result.txt"
    mp.spawn(spawn_target, args=(_ddp_worker, 2, _free_port(), str(result)), nprocs=2, join=True)
    diff, moved, world = result.read_text().split()
    assert float(diff) == 0.0, f"parameters differ across ranks by {diff}"
    assert float(moved) > 0.0 and int(world) == 2


# ---- the runnable examples and the demo (acceptance commands) ------------------------------------------------------
def _run(cmd, cwd, timeout=240):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_pretrain_bert_example_under_torchrun_with_two_processes(tmp_path):
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                os.path.join(REPO, "examples", "pretrain_bert.py"), "--steps", "3", "--quiet", "--hidden", "32",
                "--out", str(tmp_path / "bert")], cwd=str(tmp_path))
    assert out.count("max |param - rank 0 param| = 0") == 2
    assert os.path.exists(tmp_path / "bert" / "checkpoint" / "config.json")
    assert os.path.exists(tmp_path / "bert" / "loss.csv")


@pytest.mark.slow
def test_pretrain_gpt_and_finetune_examples(tmp_path):
    out = _run([sys.executable, os.path.join(REPO, "examples", "pretrain_gpt.py"), "--steps", "3", "--quiet",
                "--hidden", "32", "--out", str(tmp_path / "gpt")], cwd=str(tmp_path))
    assert "sample:" in out and "perplexity" in out
    out = _run([sys.executable, os.path.join(REPO, "examples", "finetune_classifier.py"), "--steps", "3", "--quiet",
                "--hidden", "32", "--dataset", "austen", "--out", str(tmp_path / "cls")], cwd=str(tmp_path))
    assert "held-out accuracy" in out


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    out = _run([sys.executable, "-m", "pyfast", "demo", "--quick", "--no-peers", "--out", str(tmp_path)],
               cwd=str(tmp_path))
    summary = out.split("== summary")[1]
    for stage in ("word2vec", "tokenizer", "BERT MLM", "GPT CLM", "transfer"):
        assert stage in summary, f"{stage} missing from the summary table"
    # the pretrained-vs-scratch table: one row per (method, fraction), real accuracies in [0, 100]
    table = summary.split("pretrained vs scratch (held-out")[1].splitlines()[3:]
    rows = [r for r in table if r.startswith(("word2vec:", "BERT:", "GPT:"))]
    assert len(rows) == 3 * 2, table
    for r in rows:
        accs = [float(x) for x in re.findall(r"(\d+\.\d)% \+- (\d+\.\d)%", r) for x in x]
        assert len(accs) == 4 and all(0.0 <= a <= 100.0 for a in accs), r
        assert r.rstrip().endswith(("yes", "no")), r
