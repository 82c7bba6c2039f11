// Native corpus reader for corpus_file mode: counting (vocabulary) and token -> id conversion, each with
// `workers` threads on their own byte ranges of the file. A line belongs to the range its first byte falls in;
// a range that starts mid-line skips to the next line. Memory: the id pass keeps 4 bytes per in-vocabulary token
// (the whole corpus as int32), read once per train() call and reused by every epoch, instead of re-tokenising
// and hashing each epoch as gensim does.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/checks.h"
#include "common/parallel.h"
#include "word2vec/word2vec.h"

namespace pyfast::w2v {

namespace {

inline bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

int64_t file_size(const std::string& path) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  PYFAST_CHECK_STATE(f != nullptr, "word2vec", "cannot open ", path);
  PYFAST_CHECK_STATE(std::fseek(f.get(), 0, SEEK_END) == 0, "word2vec", "cannot seek in ", path);
  const long size = std::ftell(f.get());
  PYFAST_CHECK_STATE(size >= 0, "word2vec", "cannot tell the size of ", path);
  return static_cast<int64_t>(size);
}

// Calls on_token(token) for each token and on_line_end() after each line whose first byte lies in [begin, end).
template <typename OnToken, typename OnLineEnd>
void scan_range(const std::string& path, int64_t begin, int64_t end, OnToken&& on_token, OnLineEnd&& on_line_end) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  PYFAST_CHECK_STATE(f != nullptr, "word2vec", "cannot open ", path);
  int64_t pos = begin;
  std::vector<char> buf(1 << 20);
  size_t len = 0, at = 0;
  auto next_byte = [&](int& c) -> bool {
    if (at == len) {
      len = std::fread(buf.data(), 1, buf.size(), f.get());
      at = 0;
      if (len == 0) return false;
    }
    c = static_cast<unsigned char>(buf[at++]);
    ++pos;
    return true;
  };
  int c = 0;
  if (begin > 0) {
    // Skip the rest of the line that byte begin-1 belongs to: it is the previous range's.
    PYFAST_CHECK_STATE(std::fseek(f.get(), static_cast<long>(begin - 1), SEEK_SET) == 0, "word2vec", "cannot seek");
    pos = begin - 1;
    while (next_byte(c) && c != '\n') {
    }
  }
  std::string token;
  bool line_has_tokens = false;
  while (pos < end) {  // pos is the first byte of a line here
    bool saw_newline = false;
    while (next_byte(c)) {
      if (c == '\n') {
        saw_newline = true;
        break;
      }
      if (is_space(static_cast<unsigned char>(c))) {
        if (!token.empty()) {
          on_token(token);
          token.clear();
          line_has_tokens = true;
        }
      } else {
        token.push_back(static_cast<char>(c));
      }
    }
    if (!token.empty()) {
      on_token(token);
      token.clear();
      line_has_tokens = true;
    }
    if (line_has_tokens) on_line_end();
    line_has_tokens = false;
    if (!saw_newline) break;  // end of file
  }
}

// [begin, end) of the file split into `workers` ranges (workers capped so each range has >= 64 KiB); end = -1
// means the file's end. Checks 0 <= begin <= end <= size.
std::vector<std::pair<int64_t, int64_t>> byte_ranges(const std::string& path, int64_t begin, int64_t end,
                                                     int& workers) {
  const int64_t size = file_size(path);
  if (end < 0) end = size;
  PYFAST_CHECK_ARG(begin >= 0 && begin <= end && end <= size, "word2vec", "byte range [", begin, ", ", end,
                   ") is not inside the file (", size, " bytes)");
  const int64_t span = end - begin;
  workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(workers, span / (1 << 16) + 1)));
  std::vector<std::pair<int64_t, int64_t>> r(workers);
  for (int w = 0; w < workers; ++w) r[w] = {begin + span * w / workers, begin + span * (w + 1) / workers};
  return r;
}

// word2vec.c's ReduceVocab: drop words seen at most `min_reduce` times.
void prune(std::unordered_map<std::string, int64_t>& counts, int64_t min_reduce) {
  for (auto it = counts.begin(); it != counts.end();) it = it->second <= min_reduce ? counts.erase(it) : std::next(it);
}

}  // namespace

VocabCounts count_corpus_file(const std::string& path, int64_t max_vocab_size, int workers, int64_t begin,
                              int64_t end) {
  PYFAST_CHECK_ARG(workers >= 1, "word2vec", "workers must be >= 1");
  const auto ranges = byte_ranges(path, begin, end, workers);
  std::vector<std::unordered_map<std::string, int64_t>> maps(workers);
  std::vector<int64_t> total(workers, 0), sentences(workers, 0), min_reduce(workers, 1);
  parallel_workers(workers, [&](int w) {
    auto& counts = maps[w];
    scan_range(
        path, ranges[w].first, ranges[w].second,
        [&](const std::string& tok) {
          ++counts[tok];
          ++total[w];
          if (max_vocab_size > 0 && static_cast<int64_t>(counts.size()) > max_vocab_size) prune(counts, min_reduce[w]++);
        },
        [&] { ++sentences[w]; });
  });
  VocabCounts out;
  auto& merged = maps[0];
  int64_t reduce = *std::max_element(min_reduce.begin(), min_reduce.end());
  for (int w = 1; w < workers; ++w) {
    for (auto& kv : maps[w]) merged[kv.first] += kv.second;
    maps[w].clear();
    if (max_vocab_size > 0)
      while (static_cast<int64_t>(merged.size()) > max_vocab_size) prune(merged, reduce++);
  }
  for (int w = 0; w < workers; ++w) {
    out.total_words += total[w];
    out.sentences += sentences[w];
  }
  std::vector<std::pair<std::string, int64_t>> items(merged.begin(), merged.end());
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  out.words.reserve(items.size());
  out.counts.reserve(items.size());
  for (auto& kv : items) {
    out.words.push_back(std::move(kv.first));
    out.counts.push_back(kv.second);
  }
  return out;
}

CorpusIds read_corpus_ids(const std::string& path, const std::vector<std::string>& vocab, int workers,
                          int64_t begin, int64_t end) {
  PYFAST_CHECK_ARG(workers >= 1, "word2vec", "workers must be >= 1");
  PYFAST_CHECK_ARG(vocab.size() < (1ull << 31), "word2vec", "vocabulary too large for int32 ids");
  std::unordered_map<std::string, int32_t> index;
  index.reserve(vocab.size() * 2);
  for (size_t i = 0; i < vocab.size(); ++i) index.emplace(vocab[i], static_cast<int32_t>(i));
  const auto ranges = byte_ranges(path, begin, end, workers);
  std::vector<CorpusIds> parts(workers);
  parallel_workers(workers, [&](int w) {
    CorpusIds& part = parts[w];
    part.sentence_offsets.push_back(0);
    scan_range(
        path, ranges[w].first, ranges[w].second,
        [&](const std::string& tok) {
          ++part.raw_words;
          const auto it = index.find(tok);
          if (it != index.end()) part.ids.push_back(it->second);
        },
        [&] {
          if (static_cast<int64_t>(part.ids.size()) > part.sentence_offsets.back())
            part.sentence_offsets.push_back(static_cast<int64_t>(part.ids.size()));
        });
  });
  CorpusIds out;
  out.sentence_offsets.push_back(0);
  for (auto& part : parts) {
    const int64_t base = static_cast<int64_t>(out.ids.size());
    out.ids.insert(out.ids.end(), part.ids.begin(), part.ids.end());
    for (size_t s = 1; s < part.sentence_offsets.size(); ++s) out.sentence_offsets.push_back(base + part.sentence_offsets[s]);
    out.raw_words += part.raw_words;
    std::vector<int32_t>().swap(part.ids);
  }
  return out;
}

}  // namespace pyfast::w2v
