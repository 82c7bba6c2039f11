# #19: ROC AUC of a masked LM's pseudo-log-likelihood (each token masked in turn, mean log-prob of the original)
# on held-out "words replaced?" rows. Usage: PYTHONPATH=. python pll.py CHECKPOINT SHARE N_ROWS
import sys, torch
from sklearn.metrics import roc_auc_score
from pyfast.models import BertForMaskedLM, WordPieceTokenizer
from pyfast.demo.corpus import load_books, split_paragraphs, replaced_word_dataset
torch.set_num_threads(2)
tok = WordPieceTokenizer.from_file("/tmp/bert_exp/tok4000")
_, test = split_paragraphs(load_books())
rows = replaced_word_dataset([p for p, _ in test], seed=1, share=float(sys.argv[2]))[:int(sys.argv[3])]
m = BertForMaskedLM.from_pretrained(sys.argv[1]).eval()
mask_id = tok.convert_tokens_to_ids("[MASK]") if hasattr(tok, "convert_tokens_to_ids") else tok.vocab.index("[MASK]")
scores = []
with torch.no_grad():
    for text, _ in rows:
        ids = torch.tensor(tok.encode(text)[:64])
        L = ids.numel()
        pos = torch.arange(1, L - 1)                      # skip [CLS] / [SEP]
        x = ids.repeat(len(pos), 1)
        x[torch.arange(len(pos)), pos] = mask_id
        lp = m(x).logits.log_softmax(-1)[torch.arange(len(pos)), pos, ids[pos]]
        scores.append(float(lp.mean()))
y = [l for _, l in rows]
print(sys.argv[1], "PLL AUC", round(roc_auc_score(y, [-s for s in scores]), 3), "rows", len(rows))
