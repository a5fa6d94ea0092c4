// MoE sub-layer (spec section 4): router, hash or top-k selection, clamped-SwiGLU experts run as
// one GEMM per expert over the tokens routed to it (prefill groups tokens by expert; decode reads
// only the k selected experts, in their stored format: FP4 for official checkpoints), plus the
// shared expert. Scratch comes from the session's workspace.
//
// The official numerics differ in order, not only in rounding: the routing weight multiplies the
// activation before w2 (rounded to bf16 there), the routed outputs are summed in expert-index
// order into a zeroed fp32 buffer, the shared expert comes last, and the sum is rounded to bf16.
#include <algorithm>

#include "dsv4/ops/moe.hpp"
#include "dsv4/ops/official_numerics.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// y[rows, D] = w2 · act(w1·x, w3·x) for `rows` gathered input rows. Official: act's rows are
// multiplied by row_weights (when not null) and rounded to bf16 before w2.
void expert_forward(const Model& model, const ExpertWeights& e, const float* x, int64_t rows,
                    const float* row_weights, float* y, Workspace& ws) {
  Backend& backend = model.backend();
  const int64_t width = e.w1.out;
  const GemmNumerics lin = linear_numerics(model);
  Workspace::Scope scope(ws);
  const auto gate = scope.take<float>(size_t(rows * width));
  const auto up = scope.take<float>(size_t(rows * width));
  linear(backend, x, rows, e.w1, gate.data(), lin);
  linear(backend, x, rows, e.w3, up.data(), lin);
  SwigluArgs act{gate.data(), up.data(), rows * width, float(model.config().swiglu_limit),
                 gate.data()};
  act.numerics = model.numerics();
  throw_if_error(backend.swiglu(act));
  if (model.official())
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < width; ++j) {
        float& g = gate[size_t(i * width + j)];
        g = ops::official::round_bf16(row_weights ? ops::official::mul32(row_weights[i], g) : g);
      }
  linear(backend, gate.data(), rows, e.w2, y, lin);
}

// Router selection and weights of one token. Official: scores and weights in the fp32 recipe,
// the biased top-k in torch.topk order (descending, lower index first).
// `scores` holds 2·E floats (the second half: official biased scores).
void route_token(const Model& model, const LayerWeights& L, const float* logits, int32_t token,
                 bool hash, float* scores, int32_t* selected, float* weights) {
  const ModelConfig& c = model.config();
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  if (model.official()) {
    ops::official::router_scores(logits, E, c.scoring_func, scores);
    if (hash) {
      std::copy_n(L.tid2eid.data() + size_t(token) * size_t(k), k, selected);
    } else {
      float* biased = scores + E;
      for (int64_t e = 0; e < E; ++e)
        biased[e] = ops::official::add32(scores[e], L.gate_bias[size_t(e)]);
      ops::official::top_k_descending(biased, E, k, selected);
    }
    ops::official::routing_weights(scores, selected, k, c.scoring_func,
                                   float(c.routed_scaling_factor), weights);
    return;
  }
  ops::router_scores(logits, E, c.scoring_func, scores);
  if (hash) {
    for (int64_t j = 0; j < k; ++j) selected[j] = L.tid2eid[size_t(token * k + j)];
  } else {
    ops::select_experts(scores, L.gate_bias.data(), E, k, selected);
  }
  ops::routing_weights(scores, selected, k, c.scoring_func, float(c.routed_scaling_factor),
                       weights);
}

}  // namespace

void moe_forward(const Model& model, int layer, const float* h, const int32_t* tokens,
                 int64_t n_tokens, float* out, Workspace& ws, LayerDecisions* decisions) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  Backend& backend = model.backend();
  const int64_t D = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const bool official = model.official();
  Workspace::Scope scope(ws);

  const auto logits = scope.take<float>(size_t(n_tokens * E));
  linear(backend, h, n_tokens, L.gate, logits.data(), fp32_linear_numerics(model));
  const auto selected = scope.take<int32_t>(size_t(n_tokens * k));
  const auto weights = scope.take<float>(size_t(n_tokens * k));
  const auto scores = scope.take<float>(size_t(2 * E));
  const bool hash = c.is_hash_layer(layer);
  for (int64_t t = 0; t < n_tokens; ++t)
    route_token(model, L, logits.data() + t * E, tokens[t], hash, scores.data(),
                selected.data() + t * k, weights.data() + t * k);
  if (decisions) decisions->router.assign(selected.begin(), selected.end());

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

  if (L.shared_expert && !official) {
    expert_forward(model, *L.shared_expert, h, n_tokens, nullptr, out, ws);
  } else {
    std::fill(out, out + n_tokens * D, 0.0f);
  }
  int64_t most = n_tokens;  // the official shared expert's output goes through y too
  for (int64_t e = 0; e < E; ++e) most = std::max(most, first[size_t(e + 1)] - first[size_t(e)]);
  const auto x = scope.take<float>(size_t(most * D));
  const auto y = scope.take<float>(size_t(most * D));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = first[size_t(e)], n = first[size_t(e + 1)] - begin;
    if (n == 0) continue;
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(h + pair_token[size_t(begin + i)] * D, D, x.data() + i * D);
    expert_forward(model, L.experts[size_t(e)], x.data(), n, pair_weight.data() + begin, y.data(),
                   ws);
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + pair_token[size_t(begin + i)] * D;
      const float w = official ? 1.0f : pair_weight[size_t(begin + i)];  // official: applied
      for (int64_t j = 0; j < D; ++j) dst[j] += w * y[size_t(i * D + j)];
    }
  }
  if (!official) return;
  if (L.shared_expert) {
    expert_forward(model, *L.shared_expert, h, n_tokens, nullptr, y.data(), ws);
    for (int64_t i = 0; i < n_tokens * D; ++i) out[i] += y[size_t(i)];
  }
  round_to_bf16(out, n_tokens * D);
}

}  // namespace dsv4::detail
