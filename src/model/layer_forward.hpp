// The forward pass of the decoder stack over the rows of one or more sequences: a chunk of one
// session's consecutive tokens, or a decode step of several sessions at once (a batch, whose
// weights are read once for all its rows). Internal to src/model; driven by Session. Scratch
// comes from the caller's Workspace (released when each function returns), never from the heap.
#pragma once

#include <cstdint>
#include <span>

#include "dsv4/model/kv_cache.hpp"
#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/workspace.hpp"

namespace dsv4::detail {

// y[rows, out] = x[rows, in] · wᵀ on the model's backend, rounded as `numerics` says.
void linear(Backend& backend, const float* x, int64_t rows, const Linear& w, float* y,
            GemmNumerics numerics = GemmNumerics::kExact);
// The same as a GEMM's arguments (for Backend::gemm_group).
GemmArgs linear_args(const float* x, int64_t rows, const Linear& w, float* y,
                     GemmNumerics numerics);

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

// One sequence's consecutive tokens in a forward pass: the pass's rows [row, row + n_tokens) are
// its positions [start, start + n_tokens). Every row-wise operation (projections, norms, mHC, the
// experts, the head) runs once over the rows of all sequences; attention and the cache updates
// run per sequence. The kernels are row-invariant (a row's result never depends on the others),
// so a sequence gets the same bits alone or in a batch.
struct SequenceRows {
  KvCache* cache = nullptr;
  int64_t start = 0;
  int64_t n_tokens = 0;
  int64_t row = 0;
  // The length of the session's first chunk (from position 0), which sets the official key
  // lists' padding for its positions.
  int64_t first_chunk = 0;
};

// Asked between layers: cancels the pass (kCancelled) when the abort callback says so.
void check_abort(const AppendOptions& options);

// The decoder stack over `n_rows` rows (the sequences' token ids in row order), extending each
// sequence's cache. Logits of rows [logits_first_row, n_rows) go to `logits` (null: none).
// `trace` (one sequence only) records intermediate values.
void forward_pass(const Model& model, std::span<const SequenceRows> sequences,
                  const int32_t* tokens, int64_t n_rows, float* logits, int64_t logits_first_row,
                  const AppendOptions& options, ForwardTrace* trace, Workspace& ws);

// Attention sub-layer: h [rows, D] (already attn_norm'ed) -> out [rows, D]; reads and extends
// each sequence's layer cache. When `decisions` is not null (one sequence only), the indexer's
// selections (CSA layers) are written to decisions->indexer [T, index_topk] (−1 = none).
void attention_forward(const Model& model, int layer, std::span<const SequenceRows> sequences,
                       const float* h, int64_t n_rows, float* out, Workspace& ws,
                       LayerDecisions* decisions = nullptr);

// MoE sub-layer: h [T, D] (already ffn_norm'ed) -> out [T, D]; tokens are needed by hash routing.
// When `decisions` is not null, the routed experts go to decisions->router [T, k].
void moe_forward(const Model& model, int layer, const float* h, const int32_t* tokens,
                 int64_t n_tokens, float* out, Workspace& ws, LayerDecisions* decisions = nullptr);
// The workspace moe_forward takes for n_tokens rows, in floats (Session::workspace_bytes).
size_t moe_workspace_floats(const ModelConfig& config, int64_t n_tokens);

}  // namespace dsv4::detail
