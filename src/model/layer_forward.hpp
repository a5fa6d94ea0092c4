// The forward pass of one decoder layer's sub-layers over a chunk of T consecutive tokens.
// Internal to src/model; composed by Session::forward_chunk. Scratch comes from the session's
// Workspace (released when each function returns), never from the heap.
#pragma once

#include <cstdint>

#include "dsv4/model/kv_cache.hpp"
#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/workspace.hpp"

namespace dsv4::detail {

// y[rows, out] = x[rows, in] · wᵀ on the model's backend, rounded as `numerics` says.
void linear(Backend& backend, const float* x, int64_t rows, const Linear& w, float* y,
            GemmNumerics numerics = GemmNumerics::kExact);

// The GEMM numerics of the model's linear layers (model.py linear(): FP8/FP4 GEMMs with bf16
// outputs in the official numerics) and of its fp32 layers (router, head, compressors).
inline GemmNumerics linear_numerics(const Model& model) {
  return model.official() ? GemmNumerics::kOfficialLinear : GemmNumerics::kExact;
}
inline GemmNumerics fp32_linear_numerics(const Model& model) {
  return model.official() ? GemmNumerics::kOfficialF32 : GemmNumerics::kExact;
}

// Rounds n values to bf16 in place (the official numerics' bf16 tensors).
void round_to_bf16(float* x, int64_t n);
// The same with a raw [out, in] weight matrix.
void matmul_transposed(Backend& backend, const float* x, int64_t rows, const float* w, int64_t out,
                       int64_t in, float* y);

// RMSNorm of `rows` rows of n values in place (weight may be null: unweighted).
void rms_norm_rows(Backend& backend, float* x, const float* weight, int64_t rows, int64_t n,
                   float eps, Numerics numerics = Numerics::kExact);

// Attention sub-layer: h [T, D] (already attn_norm'ed) at positions [start, start+T) -> out [T, D].
// Reads and extends the layer's cache. `first_chunk`: the length of the session's first chunk
// (from position 0), which sets the official key lists' padding for its positions. When
// `decisions` is not null, the indexer's selections (CSA layers) are written to
// decisions->indexer [T, index_topk] (−1 = none).
void attention_forward(const Model& model, int layer, LayerCache& cache, const float* h,
                       int64_t n_tokens, int64_t start, int64_t first_chunk, float* out,
                       Workspace& ws, LayerDecisions* decisions = nullptr);

// MoE sub-layer: h [T, D] (already ffn_norm'ed) -> out [T, D]; tokens are needed by hash routing.
// When `decisions` is not null, the routed experts go to decisions->router [T, k].
void moe_forward(const Model& model, int layer, const float* h, const int32_t* tokens,
                 int64_t n_tokens, float* out, Workspace& ws, LayerDecisions* decisions = nullptr);

}  // namespace dsv4::detail
