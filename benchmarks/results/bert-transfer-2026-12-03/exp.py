# #19 BERT transfer experiments (copied from the 2026-12-03 runs; see benchmarks/RESULTS.md): pretrain one MLM
# variant, then 41-label pretrained-vs-scratch comparisons. Usage: PYTHONPATH=. python exp.py NAME post|pre LR STEPS
# [BATCH SEQ FT_STEPS TASKS]; env BODY, POOL, FRAC, SHARE, MASKP, HID, LAY. Writes under /tmp/bert_exp.
"""#19 BERT transfer experiments: pretrain MLM variants, fine-tune 41-label comparisons on two tasks."""
import json, os, sys, time
import torch
from pyfast.demo import tasks, transfer
from pyfast.demo.corpus import load_books, split_paragraphs, word_order_dataset, replaced_word_dataset

torch.set_num_threads(2)
name = sys.argv[1]
pre_norm = sys.argv[2] == "pre"
lr = float(sys.argv[3]); steps = int(sys.argv[4])
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
seq = int(sys.argv[6]) if len(sys.argv) > 6 else 64
ft_steps = [int(x) for x in (sys.argv[7] if len(sys.argv) > 7 else "60").split(",")]
task_names = (sys.argv[8] if len(sys.argv) > 8 else "shuffled,replaced").split(",")
hidden = int(os.environ.get("HID", 128)); layers = int(os.environ.get("LAY", 2))
books = load_books(); train, test = split_paragraphs(books)
tr, te = [p for p, _ in train], [p for p, _ in test]
tok_dir = "/tmp/bert_exp/tok4000"
from pyfast.models import WordPieceTokenizer
if os.path.exists(tok_dir):
    tok = WordPieceTokenizer.from_file(tok_dir)
else:
    tok, _ = tasks.train_tokenizer(tr, 4000); tok.save(tok_dir)
out = f"/tmp/bert_exp/{name}"
t0 = time.perf_counter()
if not os.path.exists(os.path.join(out, "checkpoint", "config.json")):
    r = tasks.pretrain_bert(tok, tr, te, steps=steps, batch_size=batch, seq_len=seq, hidden=hidden, layers=layers,
                            heads=4, lr=lr, seed=0, out_dir=out, quiet=True, pre_norm=pre_norm, mlm_probability=float(os.environ.get("MASKP", 0.15)))
    losses = r["log"].losses()
    curve = [round(sum(losses[i:i + 20]) / len(losses[i:i + 20]), 2) for i in range(0, len(losses), max(1, len(losses) // 10))]
    info = dict(masked_acc=r["masked_acc"], first=r["first_loss"], last=r["last_loss"], curve=curve,
                seconds=time.perf_counter() - t0, unigram=tasks.unigram_baseline(tok, tr, te, seq))
    json.dump(info, open(os.path.join(out, "info.json"), "w"))
info = json.load(open(os.path.join(out, "info.json")))
print(name, json.dumps(info), flush=True)
ck = os.path.join(out, "checkpoint")
import functools
makers = {"shuffled": word_order_dataset, "replaced": functools.partial(replaced_word_dataset, share=float(os.environ.get("SHARE", 0.15)))}
res = {}
for task in task_names:
    trn = transfer.encode_wordpiece(makers[task](tr, seed=0), tok)
    tst = transfer.encode_wordpiece(makers[task](te, seed=1), tok)
    for fs in ft_steps:
        sides = transfer.bert_sides(ck, 2, lr=float(os.environ.get("BODY", 3e-4)), head_lr=1e-2,
                                    scratch_lr=1e-3, pooling=os.environ.get("POOL", "mean"))
        t1 = time.perf_counter()
        c = transfer.compare(task, *sides, trn, tst, num_labels=2, fractions=[float(os.environ.get("FRAC", 0.01))],
                             seeds=range(3), steps=lambda n: fs, batch_size=16, max_len=64)
        f = c.fractions[0]
        p, s = c.stats(c.pretrained, f), c.stats(c.scratch, f)
        print(f"{name} {task} share{os.environ.get('SHARE', 0.15)} body{os.environ.get('BODY', 3e-4)} pool{os.environ.get('POOL', 'mean')} ft{fs} labels {c.labels_used[f]}: pre {p[0]:.1%}+-{p[1]:.1%} scratch {s[0]:.1%}+-{s[1]:.1%}"
              f" clear {c.clear_win(f)} ({time.perf_counter() - t1:.0f}s) {c.acc}", flush=True)
