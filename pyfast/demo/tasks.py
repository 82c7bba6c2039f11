"""The demo's and the examples' workloads, each one function returning what it reached: word2vec with nearest
neighbours, a WordPiece vocabulary, BERT masked-LM pretraining (DDP-aware), GPT causal-LM pretraining with a sample,
classifier fine-tuning, and same-process throughput beside the HF / gensim peers where installed.

Sizes are the caller's: the demo picks tiny ones that finish on 2 CPU cores in minutes. Quality numbers are measured
on held-out text (the last 10% of every book), never on what was trained on.
"""
from __future__ import annotations

import math
import os
import statistics
import time
import warnings

import numpy as np
import torch

from pyfast.models import (BertConfig, BertForMaskedLM, BertForSequenceClassification, GPTConfig, GPTLMHeadModel,
                           WordPieceTokenizer)
from pyfast.data import DataCollatorForLanguageModeling
from pyfast.word2vec import Word2Vec
from pyfast.models.training import (DistInfo, LossLog, ShuffledBatches, StopRequest, Timer, resumable_run, cosine_lr,
                                    max_parameter_difference, pack_blocks, pad_batch, progress_bar, save_checkpoint,
                                    set_seed)

# Probe words for word2vec: (word, words that a sensible neighbour list of an Austen model contains one of).
W2V_PROBES = [
    ("sister", {"brother", "mother", "daughter", "aunt", "cousin", "sisters", "father", "niece"}),
    ("happy", {"happiness", "unhappy", "glad", "comfortable", "pleased", "miserable", "cheerful", "delighted"}),
    ("letter", {"note", "letters", "read", "wrote", "written", "write", "message", "reading"}),
    ("she", {"he", "her", "they", "elizabeth", "marianne", "elinor", "anne"}),
    ("morning", {"evening", "day", "night", "afternoon", "dinner", "breakfast", "week", "hour"}),
    ("three", {"two", "four", "five", "six", "ten", "few", "twenty", "several"}),
]


def train_word2vec(sentences, vector_size=64, window=5, min_count=3, epochs=5, workers=2, seed=1, impl=None):
    """-> dict(model, seconds, words_per_s, probes: {word: [neighbours]}, probe_hits: fraction)."""
    impl = Word2Vec if impl is None else impl
    words = sum(len(s) for s in sentences)
    t = Timer()
    model = impl(sentences=sentences, vector_size=vector_size, window=window, min_count=min_count, sg=1,
                 negative=5, epochs=epochs, workers=workers, seed=seed)
    seconds = t.elapsed()
    wv = model.wv
    probes, hits = {}, 0
    for word, expected in W2V_PROBES:
        if word not in wv.key_to_index:
            continue
        neighbours = [w for w, _ in wv.most_similar(word, topn=10)]
        probes[word] = neighbours
        hits += bool(expected & set(neighbours))
    return {"model": model, "seconds": seconds, "words_per_s": words * epochs / seconds,
            "probes": probes, "probe_hits": hits / max(1, len(probes))}


def train_tokenizer(paragraphs, vocab_size=4000):
    t = Timer()
    tokenizer = WordPieceTokenizer.train(paragraphs, vocab_size=vocab_size, min_frequency=2)
    return tokenizer, t.elapsed()


def _adamw(model, lr):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-6)


# Dropout defaults to 0 for pretraining: runs of a few hundred steps never revisit text often enough to overfit, and
# dropout slows how fast a tiny model leaves the unigram plateau. Fine-tuning (small labelled sets) uses 0.1.
def bert_config(tokenizer, seq_len, hidden=128, layers=2, heads=4, dropout=0.0, pre_norm=False):
    return BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=seq_len,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      pad_token_id=tokenizer.pad_token_id, pre_norm=pre_norm)


def gpt_config(tokenizer, seq_len, hidden=128, layers=2, heads=4, dropout=0.0):
    return GPTConfig(vocab_size=len(tokenizer), n_positions=seq_len, n_embd=hidden, n_layer=layers, n_head=heads,
                     dropout=dropout, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)


def mlm_blocks(tokenizer, paragraphs, seq_len):
    ids = tokenizer.encode_batch(paragraphs, add_special_tokens=False)
    return pack_blocks(ids, seq_len, prefix=[tokenizer.cls_token_id], suffix=[tokenizer.sep_token_id])


def causal_blocks(tokenizer, paragraphs, seq_len):
    ids = tokenizer.encode_batch(paragraphs, add_special_tokens=False)
    return pack_blocks(ids, seq_len, separator=[tokenizer.sep_token_id])  # [SEP] ends each paragraph


def _batches(n_rows, batch_size, seed):
    """Endless shuffled index batches (a fresh permutation per epoch)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_rows, generator=gen)
        for i in range(0, n_rows - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def pretrain_bert(tokenizer, train_paragraphs, test_paragraphs, *, steps=300, batch_size=32, seq_len=64, hidden=128,
                  layers=2, heads=4, lr=1e-3, seed=0, out_dir=None, save_every=0, dist: DistInfo | None = None,
                  quiet=False, log_every=1, resume=False, stop: StopRequest | None = None, dropout=0.0,
                  pre_norm=False, mlm_probability=0.15):
    """MLM pretraining with the pyfast collator (15%, 80/10/10) and sparse prediction. Under DDP every rank takes
    its own share of the blocks and its own masking stream; gradients are averaged, so parameters stay identical.
    pre_norm: pre-LN blocks (BertConfig.pre_norm); mlm_probability: the share of tokens chosen for prediction.
    Resumable checkpoints (see ResumableRun) go to out_dir/checkpoints every save_every steps and when ``stop``
    fires (then TrainingInterrupted is raised); ``resume`` continues from the latest one.
    -> dict(model, log, tokens_per_s, first_loss, last_loss, masked_acc, param_diff, checkpoint)."""
    from torch.nn.parallel import DistributedDataParallel

    dist = dist or DistInfo()
    blocks = mlm_blocks(tokenizer, train_paragraphs, seq_len)
    if blocks.shape[0] < batch_size * dist.world_size:
        raise ValueError(f"pretrain_bert: {blocks.shape[0]} blocks of {seq_len} tokens; need at least "
                         f"{batch_size * dist.world_size} for one batch per rank")
    shard = blocks[dist.rank::dist.world_size]
    set_seed(seed)  # identical initial parameters on every rank (DDP also broadcasts rank 0's at wrap time)
    model = BertForMaskedLM(bert_config(tokenizer, seq_len, hidden, layers, heads, dropout, pre_norm)).to(dist.device)
    train_model = DistributedDataParallel(model) if dist.enabled else model
    optimizer = _adamw(model, lr)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability,
                                               seed=seed + 1000 * dist.rank)
    log, batches = LossLog(), ShuffledBatches(shard.shape[0], batch_size, seed + dist.rank)
    run = resumable_run("pretrain_bert", out_dir, model, optimizer, tokenizer, dist, save_every, resume, stop, log=log,
                        batches=batches, collator=collator, settings=dict(
                            steps=steps, batch_size=batch_size, seq_len=seq_len, hidden=hidden, layers=layers,
                            heads=heads, lr=lr, seed=seed, dropout=dropout,
                            # only when not the default: checkpoints written before these options still resume
                            **({"pre_norm": True} if pre_norm else {}),
                            **({"mlm_probability": mlm_probability} if mlm_probability != 0.15 else {})))
    first = run.restore() if resume else 0
    bar = progress_bar(steps, "bert mlm", disable=quiet or not dist.is_main)
    if first:
        bar.update(first)
    model.train()
    tokens, train_seconds = 0, 0.0
    with run:
        for step in range(first, steps):
            t0 = time.perf_counter()
            batch = collator([{"input_ids": row} for row in shard[next(batches)]])
            batch = {k: v.to(dist.device) for k, v in batch.items()}
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 10))
            loss = train_model(batch["input_ids"], attention_mask=batch.get("attention_mask"),
                               labels=batch["labels"]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            train_seconds += time.perf_counter() - t0
            tokens += batch["input_ids"].numel()
            if step % log_every == 0 or step == steps - 1:
                log.add(step, loss.item(), lr=optimizer.param_groups[0]["lr"])
            bar.update(1)
            bar.set_postfix_str(f"loss {loss.item():.3f}")
            run.step_done(step + 1, steps)
    bar.close()
    param_diff = max_parameter_difference(model)
    checkpoint = None
    if out_dir:
        if dist.is_main:
            checkpoint = save_checkpoint(model, os.path.join(out_dir, "checkpoint"), optimizer, steps, tokenizer)
            log.write_csv(os.path.join(out_dir, "loss.csv"))
            log.plot(os.path.join(out_dir, "loss.png"), f"BERT MLM pretraining ({dist.world_size} process(es))")
        _barrier(dist)
        checkpoint = os.path.join(out_dir, "checkpoint")
    masked_acc = evaluate_mlm(model, tokenizer, test_paragraphs, seq_len, seed=seed) if dist.is_main else None
    return {"model": model, "log": log, "tokens_per_s": tokens * dist.world_size / max(train_seconds, 1e-9),
            "first_loss": log.smoothed(first=True), "last_loss": log.smoothed(first=False),
            "masked_acc": masked_acc, "param_diff": param_diff, "checkpoint": checkpoint}


def _barrier(dist: DistInfo) -> None:
    if dist.enabled:
        import torch.distributed

        torch.distributed.barrier()


@torch.no_grad()
def evaluate_mlm(model, tokenizer, paragraphs, seq_len, seed=0, max_blocks=256):
    """Top-1 accuracy at masked positions of held-out blocks (fixed masking seed)."""
    blocks = mlm_blocks(tokenizer, paragraphs, seq_len)[:max_blocks]
    if blocks.shape[0] == 0:
        return float("nan")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15, seed=seed + 7)
    batch = collator([{"input_ids": row} for row in blocks])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = model(batch["input_ids"].to(device), labels=batch["labels"].to(device))
    model.train(was_training)
    predicted = out.logits.argmax(-1)
    return float((predicted == out.masked_labels).float().mean())


def unigram_baseline(tokenizer, train_paragraphs, test_paragraphs, seq_len):
    """Masked-token accuracy of always guessing the most frequent training token: what an MLM that learned only
    word frequencies reaches (the bar a pretrained model has to clear)."""
    train_blocks = mlm_blocks(tokenizer, train_paragraphs, seq_len)
    counts = torch.bincount(train_blocks.flatten(), minlength=len(tokenizer))
    counts[tokenizer.all_special_ids] = 0
    test_blocks = mlm_blocks(tokenizer, test_paragraphs, seq_len)[:256]
    return float((test_blocks == counts.argmax()).float().mean()) if test_blocks.numel() else float("nan")


def pretrain_gpt(tokenizer, train_paragraphs, test_paragraphs, *, steps=300, batch_size=16, seq_len=64, hidden=128,
                 layers=2, heads=4, lr=1e-3, seed=0, out_dir=None, quiet=False, prompt="It is a truth",
                 sample_tokens=30, save_every=0, resume=False, stop: StopRequest | None = None, dropout=0.0):
    """Causal-LM pretraining; resumable checkpoints as in pretrain_bert.
    -> dict(model, log, tokens_per_s, first_loss, last_loss, perplexity, sample, checkpoint: the saved
    directory, None without out_dir)."""
    blocks = causal_blocks(tokenizer, train_paragraphs, seq_len)
    if blocks.shape[0] < batch_size:
        raise ValueError(f"pretrain_gpt: {blocks.shape[0]} blocks of {seq_len} tokens; need at least {batch_size}")
    set_seed(seed)
    model = GPTLMHeadModel(gpt_config(tokenizer, seq_len, hidden, layers, heads, dropout))
    optimizer = _adamw(model, lr)
    log, batches = LossLog(), ShuffledBatches(blocks.shape[0], batch_size, seed)
    run = resumable_run("pretrain_gpt", out_dir, model, optimizer, tokenizer, None, save_every, resume, stop, log=log,
                        batches=batches, settings=dict(
                            steps=steps, batch_size=batch_size, seq_len=seq_len, hidden=hidden, layers=layers,
                            heads=heads, lr=lr, seed=seed, dropout=dropout))
    first = run.restore() if resume else 0
    bar = progress_bar(steps, "gpt clm", disable=quiet)
    if first:
        bar.update(first)
    model.train()
    tokens, train_seconds = 0, 0.0
    with run:
        for step in range(first, steps):
            t0 = time.perf_counter()
            input_ids = blocks[next(batches)]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 10))
            loss = model(input_ids, labels=input_ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            train_seconds += time.perf_counter() - t0
            tokens += input_ids.numel()
            log.add(step, loss.item(), lr=optimizer.param_groups[0]["lr"])
            bar.update(1)
            bar.set_postfix_str(f"loss {loss.item():.3f}")
            run.step_done(step + 1, steps)
    bar.close()
    perplexity = evaluate_perplexity(model, tokenizer, test_paragraphs, seq_len)
    prompt_ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    generated = model.generate(prompt_ids, max_new_tokens=sample_tokens, do_sample=True, top_k=20, temperature=0.8,
                               seed=seed)
    sample = tokenizer.decode(generated[0].tolist())
    checkpoint = None
    if out_dir:
        checkpoint = os.path.join(out_dir, "checkpoint")
        save_checkpoint(model, checkpoint, optimizer, steps, tokenizer)
        log.write_csv(os.path.join(out_dir, "loss.csv"))
        log.plot(os.path.join(out_dir, "loss.png"), "GPT causal-LM pretraining")
    return {"model": model, "log": log, "tokens_per_s": tokens / max(train_seconds, 1e-9),
            "first_loss": log.smoothed(first=True), "last_loss": log.smoothed(first=False),
            "perplexity": perplexity, "sample": sample, "checkpoint": checkpoint}


@torch.no_grad()
def evaluate_perplexity(model, tokenizer, paragraphs, seq_len, max_blocks=128):
    blocks = causal_blocks(tokenizer, paragraphs, seq_len)[:max_blocks]
    if blocks.shape[0] == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    loss = model(blocks, labels=blocks).loss
    model.train(was_training)
    return math.exp(float(loss))


def finetune_classifier(tokenizer, train_rows, test_rows, *, num_labels, init=None, word_vectors=None, steps=150,
                        batch_size=32, max_len=64, hidden=128, layers=2, heads=4, lr=2e-3, seed=0, quiet=False,
                        freeze_embeddings=False, out_dir=None, pooling="mean"):
    """Fine-tune BertForSequenceClassification on (text, label) rows; report held-out accuracy. One run, one model:
    examples/finetune_classifier.py's workload (the demo's pretrained-vs-scratch comparisons over seeds and label
    fractions are pyfast.demo.transfer's).
    init: a checkpoint directory (MLM-pretrained encoder) or None (random). word_vectors: a word2vec model whose
    vectors initialise the word embeddings (its vector size must equal `hidden`).
    -> dict(model, log, accuracy, majority, transfer report or None, first_loss, last_loss)."""
    from pyfast.nn import embedding_from_word2vec

    set_seed(seed)
    transfer = None
    if init is not None:
        with warnings.catch_warnings():  # the new head is expected to be fresh; report it in one line instead
            warnings.simplefilter("ignore")
            model = BertForSequenceClassification.from_pretrained(init, num_labels=num_labels, classifier_dropout=0.1,
                                                                  classifier_pooling=pooling)
        if not quiet:
            print(f"  encoder from {init}; new: {', '.join(model.loaded_keys_report['missing'])}")
    else:
        config = bert_config(tokenizer, max_len, hidden, layers, heads, dropout=0.1)
        config.num_labels, config.classifier_pooling = num_labels, pooling
        model = BertForSequenceClassification(config)
    if word_vectors is not None:
        embedding, transfer = embedding_from_word2vec(word_vectors, tokenizer.vocab, freeze=freeze_embeddings,
                                                      padding_idx=tokenizer.pad_token_id, seed=seed)
        model.bert.set_input_embeddings(embedding)
    max_len = min(max_len, model.config.max_position_embeddings)
    train_ids = tokenizer.encode_batch([t for t, _ in train_rows])
    train_labels = torch.tensor([y for _, y in train_rows])
    optimizer = _adamw(model, lr)
    log, batches = LossLog(), _batches(len(train_rows), min(batch_size, len(train_rows)), seed)
    bar = progress_bar(steps, "classifier", disable=quiet)
    model.train()
    for step in range(steps):
        idx = next(batches).tolist()
        input_ids, attention_mask = pad_batch([train_ids[i] for i in idx], tokenizer.pad_token_id, max_len)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 10))
        loss = model(input_ids, attention_mask=attention_mask, labels=train_labels[idx]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        log.add(step, loss.item())
        bar.update(1)
        bar.set_postfix_str(f"loss {loss.item():.3f}")
    bar.close()
    accuracy = evaluate_classifier(model, tokenizer, test_rows, max_len)
    counts = np.bincount([y for _, y in train_rows], minlength=num_labels)
    majority = float(np.mean([y == int(counts.argmax()) for _, y in test_rows]))
    if out_dir:
        save_checkpoint(model, os.path.join(out_dir, "checkpoint"), optimizer, steps, tokenizer)
        log.write_csv(os.path.join(out_dir, "loss.csv"))
        log.plot(os.path.join(out_dir, "loss.png"), "classifier fine-tuning")
    return {"model": model, "log": log, "accuracy": accuracy, "majority": majority, "transfer": transfer,
            "first_loss": log.smoothed(first=True), "last_loss": log.smoothed(first=False)}


@torch.no_grad()
def evaluate_classifier(model, tokenizer, rows, max_len, batch_size=64):
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        input_ids, attention_mask = pad_batch(tokenizer.encode_batch([t for t, _ in chunk]), tokenizer.pad_token_id,
                                              max_len)
        predicted = model(input_ids, attention_mask=attention_mask).logits.argmax(-1)
        correct += int((predicted == torch.tensor([y for _, y in chunk])).sum())
    model.train(was_training)
    return correct / max(1, len(rows))


# ---- throughput beside the peers ------------------------------------------------------------------------------
def _interleaved_step_seconds(step_fns: dict, repeat: int) -> dict:
    """Run each contender's training step once to warm up, then A B A B ... `repeat` rounds; median seconds."""
    for fn in step_fns.values():
        fn()
    times = {name: [] for name in step_fns}
    for r in range(repeat):
        order = list(step_fns.items()) if r % 2 == 0 else list(reversed(step_fns.items()))
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def _train_step(model, optimizer, make_inputs):
    def step():
        loss = model(**make_inputs()).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def bert_throughput_vs_hf(tokenizer, paragraphs, *, batch_size=32, seq_len=64, hidden=128, layers=2, heads=4,
                          repeat=5, seed=0):
    """Training-step tokens/s: pyfast BertForMaskedLM (pyfast collator, sparse prediction) beside HF's
    BertForMaskedLM (HF collator, dense prediction, sdpa attention) of the same size, when transformers is installed."""
    blocks = mlm_blocks(tokenizer, paragraphs, seq_len)[:batch_size]
    set_seed(seed)
    ours = BertForMaskedLM(bert_config(tokenizer, seq_len, hidden, layers, heads))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15, seed=seed)
    fns = {"pyfast": _train_step(ours, _adamw(ours, 1e-4), lambda: _mlm_inputs(collator([{"input_ids": r} for r in blocks])))}
    try:
        import transformers
    except ImportError:
        transformers = None
    if transformers is not None:
        hf_config = transformers.BertConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=4 * hidden, max_position_embeddings=seq_len, pad_token_id=tokenizer.pad_token_id,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # as bert_config: same work per step
        peer = transformers.BertForMaskedLM(hf_config)
        hf_collator = transformers.DataCollatorForLanguageModeling(tokenizer.to_hf(), mlm_probability=0.15)
        fns["HF transformers"] = _train_step(peer, _adamw(peer, 1e-4),
                                             lambda: _mlm_inputs(hf_collator([{"input_ids": r.tolist()} for r in blocks])))
    seconds = _interleaved_step_seconds(fns, repeat)
    return {name: batch_size * seq_len / s for name, s in seconds.items()}


def _mlm_inputs(batch):
    return {"input_ids": batch["input_ids"], "labels": batch["labels"]}


def gpt_throughput_vs_hf(tokenizer, paragraphs, *, batch_size=16, seq_len=64, hidden=128, layers=2, heads=4,
                         repeat=5, seed=0):
    """Training-step tokens/s: pyfast GPTLMHeadModel beside HF GPT2LMHeadModel of the same size (sdpa)."""
    blocks = causal_blocks(tokenizer, paragraphs, seq_len)[:batch_size]
    set_seed(seed)
    ours = GPTLMHeadModel(gpt_config(tokenizer, seq_len, hidden, layers, heads))
    inputs = {"input_ids": blocks, "labels": blocks}
    fns = {"pyfast": _train_step(ours, _adamw(ours, 1e-4), lambda: inputs)}
    try:
        import transformers
    except ImportError:
        transformers = None
    if transformers is not None:
        peer = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=len(tokenizer), n_positions=seq_len, n_embd=hidden, n_layer=layers, n_head=heads,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # as gpt_config: same work per step
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, loss_type="ForCausalLM"))
        fns["HF transformers"] = _train_step(peer, _adamw(peer, 1e-4), lambda: inputs)
    seconds = _interleaved_step_seconds(fns, repeat)
    return {name: batch_size * seq_len / s for name, s in seconds.items()}


def implementation_name(cls) -> str:
    """'pyfast' for pyfast's classes, else the top-level package that provides `cls` (e.g. 'gensim')."""
    module = getattr(cls, "__module__", "") or ""
    return "pyfast" if module.startswith("pyfast") else module.split(".")[0]


def word2vec_peer():
    """gensim's Word2Vec class when installed, for the same-settings comparison; else None."""
    try:
        from gensim.models import Word2Vec as GensimWord2Vec
    except ImportError:
        return None
    return GensimWord2Vec
