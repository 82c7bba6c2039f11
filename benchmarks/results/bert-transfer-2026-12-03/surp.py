# #19: ROC AUC of a masked LM's mean log-probability of the input tokens on held-out "words replaced?" rows.
# Usage: PYTHONPATH=. python surp.py CHECKPOINT SHARE (tokenizer from exp.py's /tmp/bert_exp/tok4000).
import torch, sys
from sklearn.metrics import roc_auc_score
from pyfast.models import BertForMaskedLM, WordPieceTokenizer
from pyfast.models.training import pad_batch
from pyfast.demo.corpus import load_books, split_paragraphs, replaced_word_dataset
torch.set_num_threads(2)
tok = WordPieceTokenizer.from_file("/tmp/bert_exp/tok4000")
_, test = split_paragraphs(load_books())
rows = replaced_word_dataset([p for p, _ in test], seed=1, share=float(sys.argv[2]))
m = BertForMaskedLM.from_pretrained(sys.argv[1]).eval()
ids = tok.encode_batch([t for t, _ in rows]); y = [l for _, l in rows]
feats = []
with torch.no_grad():
    for i in range(0, len(ids), 64):
        x, a = pad_batch(ids[i:i+64], tok.pad_token_id, 64)
        lp = m(x, attention_mask=a).logits.log_softmax(-1).gather(-1, x[..., None])[..., 0]
        a = a.float(); a[:, 0] = 0
        feats += ((lp * a).sum(1) / a.sum(1)).tolist()
print(sys.argv[1], sys.argv[2], "AUC mean logprob of input tokens:", roc_auc_score(y, [-f for f in feats]))
