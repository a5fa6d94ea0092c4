// MoE sub-layer (spec section 4): router, hash or top-k selection, clamped-SwiGLU experts run as
// one GEMM per expert over the tokens routed to it (prefill groups tokens by expert; decode reads
// only the k selected experts, in their stored format: FP4 for official checkpoints), plus the
// shared expert. Scratch comes from the session's workspace.
#include <algorithm>

#include "dsv4/ops/moe.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// y[rows, D] = w2 · swiglu(w1·x, w3·x) for `rows` gathered input rows.
void expert_forward(Backend& backend, const ExpertWeights& e, const float* x, int64_t rows,
                    float limit, float* y, Workspace& ws) {
  const int64_t width = e.w1.out;
  Workspace::Scope scope(ws);
  const auto gate = scope.take<float>(size_t(rows * width));
  const auto up = scope.take<float>(size_t(rows * width));
  linear(backend, x, rows, e.w1, gate.data());
  linear(backend, x, rows, e.w3, up.data());
  throw_if_error(backend.swiglu({gate.data(), up.data(), rows * width, limit, gate.data()}));
  linear(backend, gate.data(), rows, e.w2, y);
}

}  // namespace

void moe_forward(const Model& model, int layer, const float* h, const int32_t* tokens,
                 int64_t n_tokens, float* out, Workspace& ws) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  Backend& backend = model.backend();
  const int64_t D = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const float limit = float(c.swiglu_limit);
  Workspace::Scope scope(ws);

  const auto logits = scope.take<float>(size_t(n_tokens * E));
  linear(backend, h, n_tokens, L.gate, logits.data());
  const auto selected = scope.take<int32_t>(size_t(n_tokens * k));
  const auto weights = scope.take<float>(size_t(n_tokens * k));
  const auto scores = scope.take<float>(size_t(E));
  const bool hash = c.is_hash_layer(layer);
  for (int64_t t = 0; t < n_tokens; ++t) {
    ops::router_scores(logits.data() + t * E, E, c.scoring_func, scores.data());
    int32_t* sel = selected.data() + t * k;
    if (hash) {
      for (int64_t j = 0; j < k; ++j) sel[j] = L.tid2eid[size_t(tokens[t] * k + j)];
    } else {
      ops::select_experts(scores.data(), L.gate_bias.data(), E, k, sel);
    }
    ops::routing_weights(scores.data(), sel, k, c.scoring_func, float(c.routed_scaling_factor),
                         weights.data() + t * k);
  }

  // Group the (token, weight) pairs by expert with a counting sort: first[e]..first[e+1].
  const auto first = scope.zeros<int64_t>(size_t(E + 1));
  for (int64_t i = 0; i < n_tokens * k; ++i) ++first[size_t(selected[size_t(i)] + 1)];
  for (int64_t e = 0; e < E; ++e) first[size_t(e + 1)] += first[size_t(e)];
  const auto fill = scope.take<int64_t>(size_t(E));
  std::copy_n(first.begin(), E, fill.begin());
  const auto pair_token = scope.take<int64_t>(size_t(n_tokens * k));
  const auto pair_weight = scope.take<float>(size_t(n_tokens * k));
  for (int64_t i = 0; i < n_tokens * k; ++i) {
    const int64_t at = fill[size_t(selected[size_t(i)])]++;
    pair_token[size_t(at)] = i / k;
    pair_weight[size_t(at)] = weights[size_t(i)];
  }

  if (L.shared_expert) {
    expert_forward(backend, *L.shared_expert, h, n_tokens, limit, out, ws);
  } else {
    std::fill(out, out + n_tokens * D, 0.0f);
  }
  int64_t most = 0;
  for (int64_t e = 0; e < E; ++e) most = std::max(most, first[size_t(e + 1)] - first[size_t(e)]);
  const auto x = scope.take<float>(size_t(most * D));
  const auto y = scope.take<float>(size_t(most * D));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = first[size_t(e)], n = first[size_t(e + 1)] - begin;
    if (n == 0) continue;
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(h + pair_token[size_t(begin + i)] * D, D, x.data() + i * D);
    expert_forward(backend, L.experts[size_t(e)], x.data(), n, limit, y.data(), ws);
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + pair_token[size_t(begin + i)] * D;
      const float w = pair_weight[size_t(begin + i)];
      for (int64_t j = 0; j < D; ++j) dst[j] += w * y[size_t(i * D + j)];
    }
  }
}

}  // namespace dsv4::detail
