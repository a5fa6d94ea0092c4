// MoE sub-layer (spec section 4): router, hash or top-k selection, clamped-SwiGLU experts run as
// one GEMM per expert over the tokens routed to it, plus the shared expert.
#include <vector>

#include "dsv4/ops/moe.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// y[rows, D] = w2 · swiglu(w1·x, w3·x) for `rows` gathered input rows.
void expert_forward(Backend& backend, const ExpertWeights& e, const float* x, int64_t rows,
                    float limit, float* y) {
  const int64_t width = e.w1.out;
  std::vector<float> gate(size_t(rows * width)), up(size_t(rows * width));
  linear(backend, x, rows, e.w1, gate.data());
  linear(backend, x, rows, e.w3, up.data());
  throw_if_error(backend.swiglu({gate.data(), up.data(), rows * width, limit, gate.data()}));
  linear(backend, gate.data(), rows, e.w2, y);
}

}  // namespace

void moe_forward(const Model& model, int layer, const float* h, const int32_t* tokens,
                 int64_t n_tokens, float* out) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  Backend& backend = model.backend();
  const int64_t D = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const float limit = float(c.swiglu_limit);

  std::vector<float> logits(size_t(n_tokens * E));
  linear(backend, h, n_tokens, L.gate, logits.data());
  std::vector<int32_t> selected(size_t(n_tokens * k));
  std::vector<float> weights(size_t(n_tokens * k));
  const bool hash = c.is_hash_layer(layer);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> scores(static_cast<size_t>(E));
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

  // Group (token, weight) pairs by expert.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(E));
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t j = 0; j < k; ++j)
      routed[size_t(selected[size_t(t * k + j)])].push_back({t, weights[size_t(t * k + j)]});

  if (L.shared_expert) {
    expert_forward(backend, *L.shared_expert, h, n_tokens, limit, out);
  } else {
    std::fill(out, out + n_tokens * D, 0.0f);
  }
  std::vector<float> x, y;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = routed[size_t(e)];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    x.resize(size_t(n * D));
    y.resize(size_t(n * D));
    for (int64_t i = 0; i < n; ++i)
      std::copy(h + rows[size_t(i)].first * D, h + (rows[size_t(i)].first + 1) * D,
                x.data() + i * D);
    expert_forward(backend, L.experts[size_t(e)], x.data(), n, limit, y.data());
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + rows[size_t(i)].first * D;
      const float w = rows[size_t(i)].second;
      for (int64_t j = 0; j < D; ++j) dst[j] += w * y[size_t(i * D + j)];
    }
  }
}

}  // namespace dsv4::detail
