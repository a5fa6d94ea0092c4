// The decoder stack (spec sections 2-4): the token embedding into hc_mult streams, every layer's
// attention and MoE sub-layers with mHC around each, and the head, over the rows of one or more
// sequences (layer_forward.hpp).
#include "dsv4/ops/official_numerics.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// Per-token mHC coefficients of one site over a chunk (in the caller's workspace scope).
struct MhcCoefficients {
  std::span<float> post;  // [T, n]
  std::span<float> comb;  // [T, n, n]
};

// The mHC weights of a site as the fp32 [rows, n·D] matrix the backend multiplies by.
WeightView mhc_matrix(const std::vector<float>& fn, int64_t rows) {
  return f32_weights(fn.data(), rows, int64_t(fn.size()) / rows);
}

// Collapses the streams into the sub-layer input y[T, D] and returns the update coefficients.
MhcCoefficients mhc_pre(const Model& model, const MhcWeights& w, const float* x, int64_t n_tokens,
                        float* y, Workspace::Scope& scope) {
  const ModelConfig& c = model.config();
  const int64_t n = c.hc_mult;
  MhcCoefficients coef{scope.take<float>(size_t(n_tokens * n)),
                       scope.take<float>(size_t(n_tokens * n * n))};
  MhcPreArgs a;
  a.x = x, a.n_tokens = n_tokens, a.n = n, a.d = c.hidden_size;
  a.fn = mhc_matrix(w.fn, (2 + n) * n), a.base = w.base.data(), a.scale = w.scale.data();
  a.sinkhorn_iters = c.hc_sinkhorn_iters, a.hc_eps = float(c.hc_eps);
  a.norm_eps = float(c.rms_norm_eps);
  a.y = y, a.post = coef.post.data(), a.comb = coef.comb.data();
  a.numerics = model.numerics();
  throw_if_error(model.backend().mhc_pre(a));
  return coef;
}

void mhc_post(const Model& model, const MhcCoefficients& coef, const float* z, int64_t n_tokens,
              float* x) {
  const ModelConfig& c = model.config();
  throw_if_error(model.backend().mhc_post({x, z, coef.post.data(), coef.comb.data(), n_tokens,
                                           c.hc_mult, c.hidden_size, model.numerics()}));
}

}  // namespace

void forward_pass(const Model& model, std::span<const SequenceRows> sequences,
                  const int32_t* tokens, int64_t n_rows, float* logits, int64_t logits_first_row,
                  const AppendOptions& options, ForwardTrace* trace, Workspace& ws) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const int64_t n = c.hc_mult, D = c.hidden_size, stream = n * D;
  const float eps = float(c.rms_norm_eps);
  const Numerics numerics = model.numerics();

  Workspace::Scope scope(ws);
  // Every stream starts as the token embedding.
  const auto x = scope.take<float>(size_t(n_rows * stream));
  throw_if_error(model.backend().embed({w.embed, tokens, n_rows, n, x.data()}));
  if (model.official()) round_to_bf16(x.data(), n_rows * stream);  // bf16 embedding
  if (trace) {
    trace->layer_inputs.resize(size_t(c.num_hidden_layers * n_rows * stream));
    trace->decisions.assign(size_t(c.num_hidden_layers), {});
  }

  const auto y = scope.take<float>(size_t(n_rows * D));
  const auto z = scope.take<float>(size_t(n_rows * D));
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    const LayerWeights& L = w.layers[size_t(layer)];
    check_abort(options);
    LayerDecisions* decisions = trace ? &trace->decisions[size_t(layer)] : nullptr;
    if (trace) std::copy(x.begin(), x.end(), trace->layer_inputs.begin() + layer * n_rows * stream);
    {
      Workspace::Scope site(ws);
      const MhcCoefficients coef = mhc_pre(model, L.hc_attn, x.data(), n_rows, y.data(), site);
      rms_norm_rows(model.backend(), y.data(), L.attn_norm.data(), n_rows, D, eps, numerics);
      attention_forward(model, layer, sequences, y.data(), n_rows, z.data(), ws, decisions);
      mhc_post(model, coef, z.data(), n_rows, x.data());
    }
    {
      Workspace::Scope site(ws);
      const MhcCoefficients coef = mhc_pre(model, L.hc_ffn, x.data(), n_rows, y.data(), site);
      rms_norm_rows(model.backend(), y.data(), L.ffn_norm.data(), n_rows, D, eps, numerics);
      moe_forward(model, layer, y.data(), tokens, n_rows, z.data(), ws, decisions);
      mhc_post(model, coef, z.data(), n_rows, x.data());
    }
  }

  // Final head: h = Σ_j pre_j X_j, logits = head · RMSNorm_norm(h).
  MhcHeadArgs head;
  head.x = x.data(), head.n_tokens = n_rows, head.n = n, head.d = D;
  head.fn = mhc_matrix(w.hc_head.fn, n), head.base = w.hc_head.base.data();
  head.scale = w.hc_head.scale[0], head.hc_eps = float(c.hc_eps), head.norm_eps = eps;
  head.y = y.data(), head.numerics = numerics;
  throw_if_error(model.backend().mhc_head(head));
  rms_norm_rows(model.backend(), y.data(), w.norm.data(), n_rows, D, eps, numerics);
  if (trace) trace->final_hidden.assign(y.begin(), y.end());
  if (!logits || logits_first_row >= n_rows) return;
  linear(model.backend(), y.data() + logits_first_row * D, n_rows - logits_first_row, w.head,
         logits, fp32_linear_numerics(model));
}

}  // namespace dsv4::detail
