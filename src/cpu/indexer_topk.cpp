// The lightning indexer's top-k on the CPU: a streaming pass over the key blocks with a running
// top-k per query. Nothing as long as the context is ever materialised: per worker, one block of
// scores ([queries, block]), one block of keys decoded to fp32 (the kernel's, for stored formats
// other than fp32) and one heap of k candidates per query.
//
// Decode-shaped calls (few queries) split the key blocks across threads and merge the per-thread
// heaps; prefill-shaped calls give each thread groups of queries. The scores come from the
// ISA-dispatched indexer kernel (indexer_kernel.hpp; single-threaded inside the workers).
#include "indexer_topk.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_kernels.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu {
namespace {

struct Candidate {
  float score;
  int32_t index;
};
// "a is better than b": higher score, then the lower index (the spec's deterministic tie rule).
bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// The k best candidates seen so far; the worst sits on top of the heap.
class RunningTopk {
 public:
  void reset(int64_t k) {
    k_ = size_t(k);
    heap_.clear();
    heap_.reserve(k_);
  }
  void offer(Candidate c) {
    if (heap_.size() < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (better(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  // The candidates, in no particular order, for the caller to sort in place (the heap is then
  // spent until the next reset).
  std::vector<Candidate>& items() { return heap_; }

 private:
  size_t k_ = 0;
  std::vector<Candidate> heap_;
};

struct Worker {
  std::vector<float> totals, keys;  // keys: a block decoded from its stored format
  std::vector<RunningTopk> topk;
};

// Block b's keys as a weight matrix [nb, c] the indexer kernel reads directly: fp32 and bf16 keys
// as they are, FP4 entries (codes then scales, entry after entry) as a strided FP4 view; other
// formats decoded into `scratch`.
WeightView key_block_weights(const IndexerTopkArgs& a, int64_t b, int64_t nb,
                             std::vector<float>& scratch) {
  const int64_t c = a.head_dim;
  if (!a.key_block_entries) return f32_weights(a.key_blocks[b], nb, c);
  const EntryCodec& codec = a.key_codec;
  const uint8_t* block = a.key_block_entries[b];
  if (codec.format == CacheFormat::kF32)
    return f32_weights(reinterpret_cast<const float*>(block), nb, c);
  WeightView v;
  v.out = nb, v.in = c, v.data = block;
  if (codec.format == CacheFormat::kBF16) {
    v.format = WeightFormat::kBF16;
    return v;
  }
  const auto entry_bytes = int64_t(codec.bytes());
  if (codec.format == CacheFormat::kFp4 && c % 2 == 0) {
    v.format = WeightFormat::kFp4Block;
    v.row_stride = entry_bytes;
    v.scales = block + c / 2, v.scale_cols = codec.fp4_scales(), v.scale_stride = entry_bytes;
    return v;
  }
  scratch.resize(size_t(nb * c));
  for (int64_t j = 0; j < nb; ++j) codec.decode(block + j * entry_bytes, scratch.data() + j * c);
  return f32_weights(scratch.data(), nb, c);
}

// Scores of queries [q0, q0 + nq) against block b (its first `nb` entries), offered to `topk`.
void score_block(const IndexerTopkArgs& a, int64_t q0, int64_t nq, int64_t b, int64_t nb, Worker& w,
                 RunningTopk* topk) {
  const int64_t nh = a.n_heads, c = a.head_dim;
  w.totals.resize(size_t(nq * nb));
  IndexerScoresArgs s;
  s.q = a.q + q0 * nh * c, s.u = a.weights + q0 * nh;
  s.n_queries = nq, s.n_heads = nh;
  s.keys = key_block_weights(a, b, nb, w.keys);
  s.totals = w.totals.data(), s.ld = nb;
  kernels().indexer_scores(s);
  const float inv_sqrt_dim = 1.0f / std::sqrt(float(c));
  const int64_t first = b * a.block_entries;
  for (int64_t t = 0; t < nq; ++t) {
    const int64_t visible = a.n_visible[q0 + t];
    const int64_t n_valid = std::min(nb, visible - first);
    if (visible <= a.top_k || n_valid <= 0) continue;
    const float* total = w.totals.data() + t * nb;
    for (int64_t j = 0; j < n_valid; ++j)
      topk[t].offer({total[j] * inv_sqrt_dim, int32_t(first + j)});
  }
}

// Sorts `items` in place.
void write_selection(const IndexerTopkArgs& a, int64_t t, std::vector<Candidate>& items) {
  int32_t* out = a.selected + t * a.top_k;
  const int64_t visible = a.n_visible[t];
  if (visible <= a.top_k) {
    for (int64_t w = 0; w < visible; ++w) out[w] = int32_t(w);
    a.n_selected[t] = visible;
    return;
  }
  const size_t kept = std::min(items.size(), size_t(a.top_k));
  std::partial_sort(items.begin(), items.begin() + kept, items.end(), better);
  for (size_t i = 0; i < kept; ++i) out[i] = items[i].index;
  std::sort(out, out + kept);
  a.n_selected[t] = int64_t(kept);
}

int64_t blocks_for(const IndexerTopkArgs& a, int64_t visible) {
  return (visible + a.block_entries - 1) / a.block_entries;
}

// Few queries: the key blocks are split across threads, then the heaps are merged. Every buffer
// is kept between calls (thread-local, named through references: a worker would see its own), so
// a decode step allocates nothing once they have grown.
void run_split_keys(const IndexerTopkArgs& a) {
  thread_local std::vector<std::vector<Candidate>> kept_partial;
  thread_local std::vector<Candidate> kept_merged;
  std::vector<std::vector<Candidate>>& partial = kept_partial;
  std::vector<Candidate>& merged = kept_merged;
  for (int64_t t = 0; t < a.n_queries; ++t) {
    const int64_t visible = a.n_visible[t];
    merged.clear();
    if (visible <= a.top_k) {
      write_selection(a, t, merged);
      continue;
    }
    const int64_t n_blocks = blocks_for(a, visible);
    const int n_threads =
        may_fork() ? int(std::clamp<int64_t>(n_blocks / 4, 1, omp_get_max_threads())) : 1;
    if (partial.size() < size_t(n_threads)) partial.resize(size_t(n_threads));
    ParallelGuard guard;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    guard.run([&] {
      thread_local Worker w;
      w.topk.resize(1);
      RunningTopk& topk = w.topk[0];
      topk.reset(a.top_k);
      const int id = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int64_t b = n_blocks * id / nt; b < n_blocks * (id + 1) / nt; ++b)
        score_block(a, t, 1, b, std::min(a.block_entries, visible - b * a.block_entries), w, &topk);
      partial[size_t(id)].assign(topk.items().begin(), topk.items().end());
    });
    guard.rethrow();
    for (int i = 0; i < n_threads; ++i)
      merged.insert(merged.end(), partial[size_t(i)].begin(), partial[size_t(i)].end());
    write_selection(a, t, merged);
  }
}

// Many queries: groups of queries per thread, each streaming over the blocks it needs.
void run_split_queries(const IndexerTopkArgs& a) {
  constexpr int64_t kGroup = 8;  // queries per kernel call: a block's keys are decoded once for 8
  const int64_t n_groups = (a.n_queries + kGroup - 1) / kGroup;
  ParallelGuard guard;
#pragma omp parallel for schedule(dynamic)
  for (int64_t gi = 0; gi < n_groups; ++gi)
    guard.run([&] {
      thread_local Worker w;
      const int64_t q0 = gi * kGroup, nq = std::min(kGroup, a.n_queries - q0);
      w.topk.resize(size_t(kGroup));
      int64_t max_visible = 0;
      for (int64_t t = 0; t < nq; ++t) {
        w.topk[size_t(t)].reset(a.top_k);
        max_visible = std::max(max_visible, a.n_visible[q0 + t]);
      }
      if (max_visible > a.top_k)
        for (int64_t b = 0; b < blocks_for(a, max_visible); ++b)
          score_block(a, q0, nq, b, std::min(a.block_entries, max_visible - b * a.block_entries), w,
                      w.topk.data());
      for (int64_t t = 0; t < nq; ++t) write_selection(a, q0 + t, w.topk[size_t(t)].items());
    });
  guard.rethrow();
}

}  // namespace

void indexer_topk(const IndexerTopkArgs& args) {
  if (args.n_queries <= 2 || !may_fork()) {
    run_split_keys(args);
  } else {
    run_split_queries(args);
  }
}

}  // namespace dsv4::cpu
