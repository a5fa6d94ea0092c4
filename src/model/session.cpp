// Session: the decoder stack over a chunk of tokens, with mHC around every sub-layer (spec
// sections 2-4), and the bookkeeping that makes chunked prefill and decode agree.
#include "dsv4/model/session.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "dsv4/ops/hyper_connection.hpp"
#include "dsv4/ops/rms_norm.hpp"
#include "layer_forward.hpp"

namespace dsv4 {
namespace {

// Per-token mHC coefficients of one site over a chunk.
struct MhcCoefficients {
  std::vector<float> post;  // [T, n]
  std::vector<float> comb;  // [T, n, n]
};

// mix[T, rows] = (fn · x_t) / rms(x_t) for the flattened streams x_t [n·D].
std::vector<float> mhc_mix(const Model& model, const std::vector<float>& fn, int64_t rows,
                           const float* x, int64_t n_tokens) {
  const ModelConfig& c = model.config();
  const int64_t nd = c.hc_mult * c.hidden_size;
  std::vector<float> mix(size_t(n_tokens * rows));
  detail::matmul_transposed(model.backend(), x, n_tokens, fn.data(), rows, nd, mix.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float inv = float(ops::inverse_rms(x + t * nd, nd, float(c.rms_norm_eps)));
    for (int64_t i = 0; i < rows; ++i) mix[size_t(t * rows + i)] *= inv;
  }
  return mix;
}

// Collapses the streams into the sub-layer input y[T, D] and returns the update coefficients.
MhcCoefficients mhc_pre(const Model& model, const MhcWeights& w, const float* x, int64_t n_tokens,
                        float* y) {
  const ModelConfig& c = model.config();
  const int64_t n = c.hc_mult, D = c.hidden_size, rows = (2 + n) * n;
  const std::vector<float> mix = mhc_mix(model, w.fn, rows, x, n_tokens);
  MhcCoefficients coef{std::vector<float>(size_t(n_tokens * n)),
                       std::vector<float>(size_t(n_tokens * n * n))};
#pragma omp parallel for schedule(static) if (n_tokens > 16)
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> pre(static_cast<size_t>(n));
    ops::mhc_coefficients(mix.data() + t * rows, w.base.data(), w.scale.data(), n,
                          c.hc_sinkhorn_iters, float(c.hc_eps), pre.data(),
                          coef.post.data() + t * n, coef.comb.data() + t * n * n);
    ops::mhc_collapse(x + t * n * D, pre.data(), n, D, y + t * D);
  }
  return coef;
}

void mhc_post(const Model& model, const MhcCoefficients& coef, const float* z, int64_t n_tokens,
              float* x) {
  const int64_t n = model.config().hc_mult, D = model.config().hidden_size;
#pragma omp parallel for schedule(static) if (n_tokens > 16)
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> scratch(size_t(n * D));
    ops::mhc_update(x + t * n * D, z + t * D, coef.post.data() + t * n,
                    coef.comb.data() + t * n * n, n, D, scratch.data());
  }
}

// Applies the model's thread count to this thread's OpenMP regions for one call, and restores it.
class ThreadCountScope {
 public:
  explicit ThreadCountScope(int n) : previous_(omp_get_max_threads()), active_(n > 0) {
    if (active_) omp_set_num_threads(n);
  }
  ~ThreadCountScope() {
    if (active_) omp_set_num_threads(previous_);
  }
  ThreadCountScope(const ThreadCountScope&) = delete;
  ThreadCountScope& operator=(const ThreadCountScope&) = delete;

 private:
  int previous_;
  bool active_;
};

}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options)
    : model_(std::move(model)), options_(options), cache_(model_->config()) {}

Result<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options) {
  if (!model) return Status(StatusCode::kInvalidArgument, "Session::create: model is null");
  if (options.max_positions < 0)
    return Status(StatusCode::kInvalidArgument, "max_positions must be >= 0");
  if (options.max_chunk <= 0)
    return Status(StatusCode::kInvalidArgument, "max_chunk must be positive");
  if (options.n_threads < 0) return Status(StatusCode::kInvalidArgument, "n_threads must be >= 0");
  return capture_result(
      [&] { return std::unique_ptr<Session>(new Session(std::move(model), options)); });
}

void Session::reset() {
  cache_.clear();
  position_ = 0;
}

Status Session::append(std::span<const int32_t> tokens, float* logits, ForwardTrace* trace) {
  return append(tokens, AppendOptions{}, logits, trace);
}

namespace {
void check_abort(const AppendOptions& options) {
  if (options.should_abort && options.should_abort(options.abort_user))
    fail(StatusCode::kCancelled, "append cancelled by the abort callback");
}
}  // namespace

Status Session::append(std::span<const int32_t> tokens, const AppendOptions& options, float* logits,
                       ForwardTrace* trace) {
  const ModelConfig& c = model_->config();
  if (options.output != OutputMode::kNone && options.output != OutputMode::kLast &&
      options.output != OutputMode::kAll)
    return Status(StatusCode::kInvalidArgument,
                  "unknown output mode " + std::to_string(int32_t(options.output)));
  if (options.output == OutputMode::kNone) logits = nullptr;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      return Status(StatusCode::kOutOfRange,
                    "token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) +
                        ", outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  }
  if (options_.max_positions > 0 && position_ + int64_t(tokens.size()) > options_.max_positions)
    return Status(StatusCode::kOutOfRange, "appending " + std::to_string(tokens.size()) +
                                               " tokens at position " + std::to_string(position_) +
                                               " exceeds max_positions " +
                                               std::to_string(options_.max_positions));
  if (tokens.empty()) return Status::ok();
  Status status = capture_status([&] {
    if (trace) {
      trace->layer_inputs.assign(
          size_t(c.num_hidden_layers * int64_t(tokens.size()) * c.hc_mult * c.hidden_size), 0.0f);
      trace->final_hidden.assign(tokens.size() * size_t(c.hidden_size), 0.0f);
    }
    const ThreadCountScope threads(options_.n_threads > 0 ? options_.n_threads
                                                          : model_->n_threads());
    cache_.begin(position_);
    const int64_t total = int64_t(tokens.size());
    for (int64_t begin = 0; begin < total; begin += options_.max_chunk) {
      check_abort(options);
      const int64_t n = std::min(options_.max_chunk, total - begin);
      // Which rows of this chunk produce logits, and where they go.
      float* chunk_logits = nullptr;
      int64_t first_row = n;
      if (logits && options.output == OutputMode::kAll) {
        chunk_logits = logits + begin * c.vocab_size;
        first_row = 0;
      } else if (logits && begin + n == total) {
        chunk_logits = logits;
        first_row = n - 1;
      }
      ForwardTrace chunk_trace;
      forward_chunk(tokens.data() + begin, n, position_ + begin, chunk_logits, first_row, options,
                    trace ? &chunk_trace : nullptr);
      if (trace) {
        const int64_t stream = c.hc_mult * c.hidden_size;
        for (int64_t l = 0; l < c.num_hidden_layers; ++l)
          std::copy_n(chunk_trace.layer_inputs.data() + l * n * stream, n * stream,
                      trace->layer_inputs.data() + (l * total + begin) * stream);
        std::copy_n(chunk_trace.final_hidden.data(), n * c.hidden_size,
                    trace->final_hidden.data() + begin * c.hidden_size);
      }
    }
  });
  if (!status) {
    cache_.rollback();  // the session is exactly as before the call
    return status;
  }
  cache_.commit();
  position_ += int64_t(tokens.size());
  return status;
}

void Session::forward_chunk(const int32_t* tokens, int64_t n_tokens, int64_t position,
                            float* logits, int64_t logits_first_row, const AppendOptions& options,
                            ForwardTrace* trace) {
  const Model& model = *model_;
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const int64_t n = c.hc_mult, D = c.hidden_size, stream = n * D;
  const float eps = float(c.rms_norm_eps);

  // Every stream starts as the token embedding.
  std::vector<float> x(size_t(n_tokens * stream));
  for (int64_t t = 0; t < n_tokens; ++t) {
    w.embed.decode_row(tokens[t], x.data() + t * stream);
    for (int64_t j = 1; j < n; ++j)
      std::copy_n(x.data() + t * stream, D, x.data() + t * stream + j * D);
  }
  if (trace) trace->layer_inputs.resize(size_t(c.num_hidden_layers * n_tokens * stream));

  std::vector<float> y(size_t(n_tokens * D)), z(size_t(n_tokens * D));
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    const LayerWeights& L = w.layers[size_t(layer)];
    check_abort(options);
    if (trace)
      std::copy(x.begin(), x.end(), trace->layer_inputs.begin() + layer * n_tokens * stream);

    MhcCoefficients coef = mhc_pre(model, L.hc_attn, x.data(), n_tokens, y.data());
    ops::rms_norm_rows(y.data(), L.attn_norm.data(), y.data(), n_tokens, D, eps);
    detail::attention_forward(model, layer, cache_.layer(layer), y.data(), n_tokens, position,
                              z.data());
    mhc_post(model, coef, z.data(), n_tokens, x.data());

    coef = mhc_pre(model, L.hc_ffn, x.data(), n_tokens, y.data());
    ops::rms_norm_rows(y.data(), L.ffn_norm.data(), y.data(), n_tokens, D, eps);
    detail::moe_forward(model, layer, y.data(), tokens, n_tokens, z.data());
    mhc_post(model, coef, z.data(), n_tokens, x.data());
  }

  // Final head: h = Σ_j pre_j X_j, logits = head · RMSNorm_norm(h).
  const std::vector<float> mix = mhc_mix(model, w.hc_head.fn, n, x.data(), n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::vector<float> pre(static_cast<size_t>(n));
    ops::mhc_head_weights(mix.data() + t * n, w.hc_head.base.data(), w.hc_head.scale[0], n,
                          float(c.hc_eps), pre.data());
    ops::mhc_collapse(x.data() + t * stream, pre.data(), n, D, y.data() + t * D);
  }
  ops::rms_norm_rows(y.data(), w.norm.data(), y.data(), n_tokens, D, eps);
  if (trace) trace->final_hidden.assign(y.begin(), y.end());
  if (!logits || logits_first_row >= n_tokens) return;
  detail::linear(model.backend(), y.data() + logits_first_row * D, n_tokens - logits_first_row,
                 w.head, logits);
}

}  // namespace dsv4
