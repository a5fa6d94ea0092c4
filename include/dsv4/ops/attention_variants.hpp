// The three attention variants differ only in which cached entries a query at position t sees
// (spec section 3): these policies answer that, and the shared skeleton does the rest.
#pragma once

#include <algorithm>
#include <cstdint>

namespace dsv4::ops {

// Window: positions s with t − W < s ≤ t.
struct SlidingWindowSink {
  static int64_t first_visible(int64_t t, int64_t window) {
    return std::max<int64_t>(0, t - window + 1);
  }
};

// Compressed entry w covers tokens [w·m, (w+1)·m) and is visible once complete: w < (t+1)/m.
inline int64_t compressed_visible_count(int64_t t, int64_t compress_ratio) {
  return (t + 1) / compress_ratio;
}

// HCA: every visible compressed entry. CSA: the index_topk best by the lightning indexer.
struct HeavilyCompressed {};
struct CompressedSparse {};

}  // namespace dsv4::ops
