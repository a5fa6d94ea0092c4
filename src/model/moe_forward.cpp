// MoE sub-layer (spec section 4): router, hash or top-k selection, clamped-SwiGLU experts run as
// one GEMM per expert over the tokens routed to it (prefill groups tokens by expert; decode reads
// only the k selected experts, in their stored format: FP4 for official checkpoints), plus the
// shared expert. Scratch comes from the session's workspace.
//
// The official numerics differ in order, not only in rounding: the routing weight multiplies the
// activation before w2 (rounded to bf16 there), the routed outputs are summed in expert-index
// order into a zeroed fp32 buffer, the shared expert comes last, and the sum is rounded to bf16.
#include <algorithm>
#include <span>
#include <vector>

#include "dsv4/ops/moe.hpp"
#include "dsv4/ops/official_numerics.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// One expert's part of a wave: its input rows, and where its intermediate and output rows go.
struct ExpertRun {
  const ExpertWeights* weights = nullptr;
  const float* x = nullptr;  // [rows, D]
  int64_t rows = 0;
  // Routed experts: each row's token (where its output goes); null for the shared expert, whose
  // rows are all the tokens in order.
  const int64_t* tokens = nullptr;
  // Official: act's rows are multiplied by these (routed experts) and rounded to bf16 before w2.
  const float* row_weights = nullptr;
  float* gate = nullptr;  // [rows, width]; act(gate, up) replaces it
  float* up = nullptr;    // [rows, width]
  float* y = nullptr;     // [rows, D]
};

// y = w2 · act(w1·x, w3·x) for every expert of a wave: the w1 and w3 GEMMs of all of them as one
// group, SwiGLU, then their w2 GEMMs as another (one parallel region each on the CPU, where one
// GEMM after the other had been three regions per expert).
void run_experts(const Model& model, std::span<const ExpertRun> runs) {
  Backend& backend = model.backend();
  const GemmNumerics lin = linear_numerics(model);
  thread_local std::vector<GemmArgs> gemms;  // grows once: no allocation per token
  gemms.clear();
  for (const ExpertRun& r : runs) {
    gemms.push_back(linear_args(r.x, r.rows, r.weights->w1, r.gate, lin));
    gemms.push_back(linear_args(r.x, r.rows, r.weights->w3, r.up, lin));
  }
  throw_if_error(backend.gemm_group(gemms.data(), int64_t(gemms.size())));
  for (const ExpertRun& r : runs) {
    const int64_t width = r.weights->w1.out;
    SwigluArgs act{r.gate, r.up, r.rows * width, float(model.config().swiglu_limit), r.gate};
    act.numerics = model.numerics();
    throw_if_error(backend.swiglu(act));
    if (model.official())
      for (int64_t i = 0; i < r.rows; ++i)
        for (int64_t j = 0; j < width; ++j) {
          float& g = r.gate[i * width + j];
          g = ops::official::round_bf16(r.row_weights ? ops::official::mul32(r.row_weights[i], g)
                                                      : g);
        }
  }
  gemms.clear();
  for (const ExpertRun& r : runs)
    gemms.push_back(linear_args(r.gate, r.rows, r.weights->w2, r.y, lin));
  throw_if_error(backend.gemm_group(gemms.data(), int64_t(gemms.size())));
}

// Rows of expert work per wave beyond the chunk's own tokens: a decode step's selected experts
// and the shared one all fit in one wave.
constexpr int64_t kWaveRows = 64;
int64_t wave_rows(const ModelConfig& c, int64_t n_tokens) {
  const int64_t members = c.num_experts_per_tok + (c.n_shared_experts > 0 ? 1 : 0);
  return std::max(n_tokens, std::min(kWaveRows, n_tokens * members));
}
int64_t widest_expert(const ModelConfig& c) {
  return c.moe_intermediate_size * std::max<int64_t>(1, c.n_shared_experts);
}

// Router selection and weights of one token. Official: scores and weights in the fp32 recipe,
// the biased top-k in torch.topk order (descending, lower index first).
// `scores` holds 2·E floats (the second half: official biased scores), `ids` E values.
void route_token(const Model& model, const LayerWeights& L, const float* logits, int32_t token,
                 bool hash, float* scores, int32_t* ids, int32_t* selected, float* weights) {
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
    ops::select_experts(scores, L.gate_bias.data(), E, k, selected, ids);
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
  const auto ids = scope.take<int32_t>(size_t(E));
  const bool hash = c.is_hash_layer(layer);
  for (int64_t t = 0; t < n_tokens; ++t)
    route_token(model, L, logits.data() + t * E, tokens[t], hash, scores.data(), ids.data(),
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

  // The experts run in waves of at most `cap` rows, in expert order, each wave's outputs added
  // to `out` in that order once it has run. Non-official: the shared expert comes first, writing
  // `out` itself; official: it comes last and is added after every routed expert.
  const int64_t cap = wave_rows(c, n_tokens), widest = widest_expert(c);
  const auto x = scope.take<float>(size_t(cap * D));
  const auto y = scope.take<float>(size_t(cap * D));
  const auto gate = scope.take<float>(size_t(cap * widest));
  const auto up = scope.take<float>(size_t(cap * widest));
  thread_local std::vector<ExpertRun> wave;  // grows once: no allocation per token
  wave.clear();
  int64_t used = 0;  // rows of the wave's buffers taken
  // The shared expert reads h and (non-official) writes `out` directly; a routed expert's rows
  // are gathered into the wave's x.
  const auto add_shared = [&](float* output) {
    ExpertRun r;
    r.weights = &*L.shared_expert, r.x = h, r.rows = n_tokens;
    r.gate = gate.data() + used * widest, r.up = up.data() + used * widest;
    r.y = output ? output : y.data() + used * D;
    used += n_tokens;
    wave.push_back(r);
  };
  const auto add_routed = [&](int64_t e, int64_t begin, int64_t rows) {
    float* rows_x = x.data() + used * D;
    for (int64_t i = 0; i < rows; ++i)
      std::copy_n(h + pair_token[size_t(begin + i)] * D, D, rows_x + i * D);
    ExpertRun r;
    r.weights = &L.experts[size_t(e)], r.x = rows_x, r.rows = rows;
    r.tokens = pair_token.data() + begin, r.row_weights = pair_weight.data() + begin;
    r.gate = gate.data() + used * widest, r.up = up.data() + used * widest;
    r.y = y.data() + used * D;
    used += rows;
    wave.push_back(r);
  };
  // Runs the wave, then adds its routed outputs (and the official shared expert's) to `out`.
  const auto finish_wave = [&] {
    run_experts(model, wave);
    for (const ExpertRun& r : wave) {
      if (!r.tokens) {  // the shared expert: non-official, already in `out`
        if (official)
          for (int64_t i = 0; i < n_tokens * D; ++i) out[i] += r.y[i];
        continue;
      }
      for (int64_t i = 0; i < r.rows; ++i) {
        float* dst = out + r.tokens[i] * D;
        const float w = official ? 1.0f : r.row_weights[i];  // official: applied before w2
        for (int64_t j = 0; j < D; ++j) dst[j] += w * r.y[i * D + j];
      }
    }
    wave.clear();
    used = 0;
  };

  if (L.shared_expert && !official) {
    add_shared(out);
  } else {
    std::fill(out, out + n_tokens * D, 0.0f);
  }
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = first[size_t(e)], n = first[size_t(e + 1)] - begin;
    if (n == 0) continue;
    if (used + n > cap) finish_wave();
    add_routed(e, begin, n);
  }
  if (L.shared_expert && official) {
    if (used + n_tokens > cap) finish_wave();
    add_shared(nullptr);
  }
  finish_wave();
  if (!official) return;
  round_to_bf16(out, n_tokens * D);
}

size_t moe_workspace_floats(const ModelConfig& c, int64_t n_tokens) {
  // What moe_forward takes (an int64 counts as two floats): router logits, selections, weights
  // and scores; the counting sort; the waves' x, y, gate and up rows.
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t routing = n_tokens * (E + 5 * k) + 7 * E + 2;
  const int64_t waves = wave_rows(c, n_tokens) * (2 * c.hidden_size + 2 * widest_expert(c));
  return size_t(routing + waves);
}

}  // namespace dsv4::detail
