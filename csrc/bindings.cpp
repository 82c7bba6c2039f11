// The only PYBIND11_MODULE of the CPU module `pyfast._C`. Bindings only translate: tensors arrive as
// (data_ptr, sizes...) integers from pyfast/ops/*, already validated there; kernels take plain structs.
// Every kernel call releases the GIL. C++ std::invalid_argument -> ValueError, std::runtime_error ->
// RuntimeError (pybind11's translation), so messages keep the op name the kernel put in front.
//
// One section per kernel, each a static function called from the module body.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "attention/attention.h"
#include "common/alias_table.h"
#include "attention/attention_pack.h"
#include "common/checks.h"
#include "common/dispatch.h"
#include "common/host_pool.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "common/simd.h"
#include "masking/masking.h"
#include "masking/masking_pack.h"
#include "masking/patch_masking.h"
#include "masking/patch_masking_pack.h"
#include "word2vec/noise_sampler.h"
#include "word2vec/sgns_op.h"
#include "word2vec/sgns_op_pack.h"
#include "word2vec/word2vec.h"
#include "word2vec/word2vec_pack.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// ---- Pooled output buffers, handed to torch as DLPack capsules ----------------------------------------------
// The legacy (unversioned) DLPack structs, which every torch >= 1.10 accepts through torch.from_dlpack; only
// what a CPU byte buffer needs. torch calls `deleter` when it frees the tensor's storage (from any thread,
// GIL or not): the buffer then returns to the host pool (common/host_pool.h) for the next call to reuse.
struct DLDevice {
  int32_t device_type;  // 1 = kDLCPU
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // 1 = kDLUInt
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // null: compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// DLPack's (type code, bits) of a DType: kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6.
DLDataType dlpack_type(pyfast::DType d) {
  using pyfast::DType;
  const uint8_t bits = static_cast<uint8_t>(8 * pyfast::dtype_size(d));
  switch (d) {
    case DType::kFloat32: case DType::kFloat64: case DType::kFloat16: return {2, bits, 1};
    case DType::kBFloat16: return {4, bits, 1};
    case DType::kUInt8: return {1, bits, 1};
    case DType::kBool: return {6, bits, 1};
    default: return {0, bits, 1};
  }
}

struct PooledTensor {
  DLManagedTensor managed;
  std::vector<int64_t> shape;
  pyfast::HostBuffer buffer;
};

void pooled_tensor_deleter(DLManagedTensor* self) {
  auto* holder = static_cast<PooledTensor*>(self->manager_ctx);
  pyfast::host_pool_release(holder->buffer);
  delete holder;
}

// A capsule nobody consumed (still named "dltensor") owns its tensor; a consumed one was renamed by torch.
void pooled_tensor_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    managed->deleter(managed);
  }
}

// A contiguous CPU tensor of `shape` and pyfast DType code `dtype` (common/dispatch.h).
py::capsule pooled_tensor(std::vector<int64_t> shape, int dtype) {
  constexpr const char* kName = "empty_pooled";
  PYFAST_CHECK_ARG(dtype >= 0 && dtype <= static_cast<int>(pyfast::DType::kBool), kName, "unknown dtype code ", dtype);
  const DLDataType dl = dlpack_type(static_cast<pyfast::DType>(dtype));
  const int bits = dl.bits;
  int64_t numel = 1;
  for (int64_t d : shape) {
    PYFAST_CHECK_ARG(d >= 0 && (d == 0 || numel <= (int64_t{1} << 56) / d), kName, "bad or too large shape");
    numel *= d;
  }
  auto* holder = new PooledTensor();
  try {
    holder->buffer = pyfast::host_pool_acquire(static_cast<size_t>(numel) * static_cast<size_t>(bits / 8));
  } catch (...) {
    delete holder;
    throw;
  }
  holder->shape = std::move(shape);
  DLTensor& t = holder->managed.dl_tensor;
  t.data = holder->buffer.ptr;
  t.device = {1, 0};
  t.ndim = static_cast<int32_t>(holder->shape.size());
  t.dtype = dl;
  t.shape = holder->shape.data();
  t.strides = nullptr;
  t.byte_offset = 0;
  holder->managed.manager_ctx = holder;
  holder->managed.deleter = pooled_tensor_deleter;
  PyObject* cap = PyCapsule_New(&holder->managed, "dltensor", pooled_tensor_capsule_destructor);
  if (cap == nullptr) {
    pooled_tensor_deleter(&holder->managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(cap);
}

// ================================================================================================
// common: threads, RNG, build info, error-path self-tests
// ================================================================================================
void bind_common(py::module_& m) {
  m.def("get_num_threads", &pyfast::get_num_threads);
  m.def("set_num_threads", &pyfast::set_num_threads, py::arg("n"));
  m.def("default_num_threads", &pyfast::default_num_threads);

  m.def("empty_pooled", &pooled_tensor, py::arg("shape"), py::arg("dtype"),
        "A DLPack capsule of a contiguous CPU tensor on a buffer from the host pool (see common/host_pool.h).");
  m.def(
      "host_pool_stats",
      [] {
        const pyfast::HostPoolStats s = pyfast::host_pool_stats();
        py::dict d;
        d["cached_buffers"] = s.cached_buffers;
        d["cached_bytes"] = s.cached_bytes;
        d["reused"] = s.reused;
        d["allocated"] = s.allocated;
        return d;
      },
      "Counters of the host output-buffer pool.");
  m.def("host_pool_trim", &pyfast::host_pool_trim, "Free every cached output buffer.");

  m.def(
      "build_info",
      [] {
        py::dict d;
        d["version"] = PYFAST_VERSION;
        d["compiler"] = PYFAST_COMPILER;
        d["simd"] = pyfast::simd_level();
        d["openmp"] = pyfast::have_openmp();
        return d;
      },
      "Facts fixed when the CPU module was compiled.");

  m.def(
      "philox4x32_10",
      [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
        PYFAST_CHECK_ARG(ctr.size() == 4 && key.size() == 2, "philox4x32_10",
                         "expected 4 counter words and 2 key words, got ", ctr.size(), " and ", key.size());
        const auto r = pyfast::philox4x32_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
        return std::vector<uint32_t>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key"));

  // out: float32 (n,) filled with uniform [0, 1) draws keyed by (seed, offset + i, stream).
  m.def(
      "philox_uniform_",
      [](std::uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, uint32_t stream) {
        PYFAST_CHECK_ARG(n >= 0, "philox_uniform_", "n must be >= 0, got ", n);
        float* o = as_ptr<float>(out);
        py::gil_scoped_release nogil;
        pyfast::parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i)
            o[i] = pyfast::uint_to_unit_float(pyfast::philox_draw(seed, offset + i, stream).v[0]);
        });
      },
      py::arg("out"), py::arg("n"), py::arg("seed"), py::arg("offset"), py::arg("stream"));

  // Error path and thread self-tests: `kind` selects what a worker thread throws.
  m.def(
      "_selftest_parallel",
      [](int64_t n, std::string kind) {
        std::vector<int64_t> owner(static_cast<size_t>(std::max<int64_t>(n, 0)), -1);
        int max_worker = -1;
        {
          py::gil_scoped_release nogil;
          std::vector<int> seen(pyfast::get_num_threads() + 1, 0);
          pyfast::parallel_for(n, 1, [&](int64_t b, int64_t e, int w) {
            if (kind == "value" && b > 0) throw std::invalid_argument("selftest: bad value from a worker");
            if (kind == "runtime" && b > 0) throw std::runtime_error("selftest: failure in a worker");
            for (int64_t i = b; i < e; ++i) owner[i] = w;
            seen[w] = 1;
          });
          for (size_t w = 0; w < seen.size(); ++w)
            if (seen[w]) max_worker = static_cast<int>(w);
        }
        return py::make_tuple(owner, max_worker + 1);
      },
      py::arg("n"), py::arg("kind") = "none");

  // parallel_for_elastic: -> (visits per index, workers that ran a chunk). Chunks of `grain`; `sleep_us` per
  // chunk gives late helpers a chance to join.
  m.def(
      "_selftest_parallel_elastic",
      [](int64_t n, int64_t grain, std::string kind, int64_t sleep_us) {
        std::vector<std::atomic<int>> visits(static_cast<size_t>(std::max<int64_t>(n, 0)));
        for (auto& v : visits) v.store(0);
        std::vector<std::atomic<int>> seen(static_cast<size_t>(pyfast::get_num_threads() + 1));
        for (auto& v : seen) v.store(0);
        {
          py::gil_scoped_release nogil;
          pyfast::parallel_for_elastic(n, grain, [&](int64_t b, int64_t e, int w) {
            if (kind == "value" && e == n) throw std::invalid_argument("selftest: bad value from a worker");
            if (kind == "runtime" && e == n) throw std::runtime_error("selftest: failure in a worker");
            if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
            for (int64_t i = b; i < e; ++i) visits[i].fetch_add(1);
            seen[w].store(1);
          });
        }
        std::vector<int> out(visits.size());
        for (size_t i = 0; i < visits.size(); ++i) out[i] = visits[i].load();
        int workers = 0;
        for (auto& v : seen) workers += v.load();
        return py::make_tuple(out, workers);
      },
      py::arg("n"), py::arg("grain"), py::arg("kind") = "none", py::arg("sleep_us") = 0);
}

// ================================================================================================
// word2vec trainer
// ================================================================================================

// A vector's bytes as Python bytes (numpy.frombuffer on the Python side; keeps numpy headers out of the build).
template <typename T>
py::bytes raw_bytes(const std::vector<T>& v) {
  return py::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

void bind_word2vec(py::module_& m) {
  namespace w2v = pyfast::w2v;
  // -> (words: list[bytes], counts: int64 bytes, total_words, sentences)
  m.def(
      "w2v_count_file",
      [](const std::string& path, int64_t max_vocab_size, int workers, int64_t begin, int64_t end) {
        w2v::VocabCounts vc;
        {
          py::gil_scoped_release nogil;
          vc = w2v::count_corpus_file(path, max_vocab_size, workers, begin, end);
        }
        py::list words;
        for (const auto& w : vc.words) words.append(py::bytes(w));
        return py::make_tuple(words, raw_bytes(vc.counts), vc.total_words, vc.sentences);
      },
      py::arg("path"), py::arg("max_vocab_size"), py::arg("workers"), py::arg("begin") = 0, py::arg("end") = -1);

  // -> (ids: int32 bytes, sentence_offsets: int64 bytes, raw_words)
  m.def(
      "w2v_read_file",
      [](const std::string& path, const std::vector<std::string>& vocab, int workers, int64_t begin, int64_t end) {
        w2v::CorpusIds c;
        {
          py::gil_scoped_release nogil;
          c = w2v::read_corpus_ids(path, vocab, workers, begin, end);
        }
        return py::make_tuple(raw_bytes(c.ids), raw_bytes(c.sentence_offsets), c.raw_words);
      },
      py::arg("path"), py::arg("vocab"), py::arg("workers"), py::arg("begin") = 0, py::arg("end") = -1);

  // One epoch (see word2vec/word2vec.h); TrainParams filled by name in pyfast/word2vec.py, which keeps its arrays
  // alive. Returns an EpochResult.
  pyfast::bind_word2vec_params(m);
  m.def(
      "w2v_train_epoch", [](const w2v::TrainParams& p) { return w2v::train_epoch(p); }, py::arg("params"),
      py::call_guard<py::gil_scoped_release>());

  // The noise distribution's alias table as two uint32 arrays (P(keep column) * 2^32, alias), written into
  // caller-owned (n,) buffers: the CUDA trainer uploads them (csrc/word2vec/train_cuda.cu draws with the same
  // rule as AliasTable::sample) and its numpy reference reads them.
  m.def(
      "w2v_alias_table",
      [](std::uintptr_t weights, int64_t n, std::uintptr_t thresholds, std::uintptr_t aliases) {
        PYFAST_CHECK_ARG(n >= 1, "w2v_alias_table", "no weights");
        py::gil_scoped_release nogil;
        const double* w = as_ptr<const double>(weights);
        const pyfast::AliasTable table(std::vector<double>(w, w + n));
        std::copy(table.thresholds().begin(), table.thresholds().end(), as_ptr<uint32_t>(thresholds));
        std::copy(table.aliases().begin(), table.aliases().end(), as_ptr<uint32_t>(aliases));
      },
      py::arg("weights"), py::arg("n"), py::arg("thresholds"), py::arg("aliases"));

  // One block update on given rows (tests compare it with pyfast/reference/word2vec.py). Returns the loss.
  m.def(
      "w2v_block_",
      [](int sg, std::uintptr_t syn0, std::uintptr_t syn1neg, int64_t vocab_size, int dim,
         std::vector<int32_t> contexts, std::vector<int32_t> targets, double alpha, int cbow_mean) {
        PYFAST_CHECK_ARG(dim >= 1 && !contexts.empty() && !targets.empty(), "w2v_block_", "empty block");
        for (int32_t id : contexts) PYFAST_CHECK_ARG(id >= 0 && id < vocab_size, "w2v_block_", "context id out of range");
        for (int32_t id : targets) PYFAST_CHECK_ARG(id >= 0 && id < vocab_size, "w2v_block_", "target id out of range");
        w2v::WindowScratch scratch;
        const int B = static_cast<int>(contexts.size()), T = static_cast<int>(targets.size());
        scratch.resize((B + 1) / 2, T - 1, dim);
        py::gil_scoped_release nogil;
        if (sg)
          return w2v::sg_block(as_ptr<float>(syn0), as_ptr<float>(syn1neg), dim, contexts.data(), B, targets.data(), T,
                               static_cast<float>(alpha), true, scratch);
        return w2v::cbow_block(as_ptr<float>(syn0), as_ptr<float>(syn1neg), dim, contexts.data(), B, targets.data(), T,
                               cbow_mean != 0, static_cast<float>(alpha), true, scratch);
      },
      py::arg("sg"), py::arg("syn0"), py::arg("syn1neg"), py::arg("vocab_size"), py::arg("dim"), py::arg("contexts"),
      py::arg("targets"), py::arg("alpha"), py::arg("cbow_mean"));
}

// ================================================================================================
// attention
// ================================================================================================
// The params classes: csrc/attention/attention_pack.h (the CUDA module binds the same).
void bind_attention(py::module_& m) {
  pyfast::attention::bind_attention_params(m);
  m.def(
      "attention_fwd", [](const pyfast::attention::AttentionParams& p) { pyfast::attention::attention_fwd_cpu(p); },
      py::arg("params"), py::call_guard<py::gil_scoped_release>(),
      "Fused attention forward: fills out and lse (see csrc/attention/attention.h).");
  m.def(
      "attention_bwd",
      [](const pyfast::attention::AttentionBackwardParams& p) { pyfast::attention::attention_bwd_cpu(p); },
      py::arg("params"), py::call_guard<py::gil_scoped_release>(),
      "Fused attention backward: fills dq, dk, dv (scores recomputed from lse).");
  m.def(
      "attention_dropout_mask",
      [](std::uintptr_t keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len, double dropout_p,
         uint64_t seed) {
        pyfast::attention::attention_dropout_keep_mask(as_ptr<uint8_t>(keep), batch, heads, q_len, kv_len,
                                                       static_cast<float>(dropout_p), seed);
      },
      py::arg("keep"), py::arg("batch"), py::arg("heads"), py::arg("q_len"), py::arg("kv_len"), py::arg("dropout_p"),
      py::arg("seed"), py::call_guard<py::gil_scoped_release>(),
      "The uint8 (B, H, L, S) keep mask the attention kernels draw for (dropout_p, seed): tests only.");
}

// ================================================================================================
// masking
// ================================================================================================
void bind_masking(py::module_& m) {
  pyfast::bind_masking_params(m);
  m.def(
      "mask_tokens", [](const pyfast::MaskTokensParams& p) { pyfast::mask_tokens_cpu(p); },
      py::call_guard<py::gil_scoped_release>(),
      "Masked-token sampling: fills p.out_ids and p.labels (see csrc/masking/masking.h).");
  pyfast::bind_patch_mask_params(m);
  m.def(
      "random_patch_mask", [](const pyfast::PatchMaskParams& p) { pyfast::patch_mask_cpu(p); },
      py::call_guard<py::gil_scoped_release>(),
      "MAE's per-image patch choice: fills p.ids_keep, p.ids_restore and p.mask (see csrc/masking/patch_masking.h).");
}

// ================================================================================================
// sgns op
// ================================================================================================

// Params structs bound by word2vec/sgns_op_pack.h (shared with bindings_cuda.cpp).
void bind_sgns(py::module_& m) {
  pyfast::bind_sgns_params(m);
  m.def(
      "sgns_forward", [](const pyfast::SgnsForwardParams& p) { pyfast::sgns_forward_cpu(p); }, py::arg("params"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "sgns_unique", [](const pyfast::SgnsUniqueParams& p) { pyfast::sgns_unique_cpu(p); }, py::arg("params"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "sgns_forward_fused", [](const pyfast::SgnsFusedParams& p) { pyfast::sgns_forward_fused_cpu(p); },
      py::arg("params"), py::call_guard<py::gil_scoped_release>());
  m.def(
      "sgns_backward", [](const pyfast::SgnsBackwardParams& p) { pyfast::sgns_backward_cpu(p); }, py::arg("params"),
      py::call_guard<py::gil_scoped_release>());
  m.def(
      "sgns_advise_hugepages",
      [](std::uintptr_t data, int64_t bytes) { return pyfast::sgns_advise_hugepages(as_ptr<void>(data), bytes); },
      py::arg("data"), py::arg("bytes"), py::call_guard<py::gil_scoped_release>());

  // counts: float64 (V,); sample(out int64 (num_rows, k), num_rows, k, seed). See word2vec/noise_sampler.h.
  py::class_<pyfast::NoiseSampler>(m, "NoiseSampler")
      .def(py::init([](std::uintptr_t counts, int64_t num_embeddings, double exponent) {
             py::gil_scoped_release nogil;
             return new pyfast::NoiseSampler(as_ptr<const double>(counts), num_embeddings, exponent);
           }),
           py::arg("counts"), py::arg("num_embeddings"), py::arg("exponent"))
      .def("size", &pyfast::NoiseSampler::size)
      .def(
          "sample",
          [](const pyfast::NoiseSampler& self, std::uintptr_t out, int64_t num_rows, int64_t k, uint64_t seed) {
            self.sample(as_ptr<int64_t>(out), num_rows, k, seed);
          },
          py::arg("out"), py::arg("num_rows"), py::arg("k"), py::arg("seed"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfast CPU kernels (raw-pointer interface; use the pyfast Python API)";
  bind_common(m);
  bind_word2vec(m);
  bind_attention(m);
  bind_masking(m);
  bind_sgns(m);
}
