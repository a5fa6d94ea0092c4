#include "dsv4/model/model.hpp"

#include <cstdio>

#include "dsv4/backend/registry.hpp"
#include "dsv4/core/checksum.hpp"
#include "dsv4/core/format_traits.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"
#include "dsv4/ops/official_numerics.hpp"
#include "dsv4/ops/rope.hpp"

namespace dsv4 {
namespace {
void check_options(const ModelLoadOptions& options) {
  if (options.n_threads < 0) fail(StatusCode::kInvalidArgument, "n_threads must be >= 0");
  if (options.numerics != Numerics::kExact && options.numerics != Numerics::kOfficial)
    fail(StatusCode::kInvalidArgument,
         "unknown numerics mode " + std::to_string(int(options.numerics)));
}

std::string gib(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
  return buf;
}

void check_memory(size_t needed, const ModelLoadOptions& options) {
  const size_t available = available_memory_bytes();
  const size_t limit = options.memory_limit ? options.memory_limit : available;
  if (limit == 0 || needed <= limit) return;
  fail(StatusCode::kOutOfMemory,
       "the model needs about " + std::to_string(needed) + " bytes (" + gib(needed) +
           ") resident, over the limit of " + std::to_string(limit) + " bytes (" + gib(limit) +
           (options.memory_limit ? ", set by the caller" : ", the memory available now") + ")");
}
std::string describe(const OpDesc& op) {
  std::string s(op_kind_name(op.kind));
  if (op.kind == OpKind::kGemm || op.kind == OpKind::kEmbed)
    s += "[" + std::string(weight_format_traits(op.weight_format).name) + "]";
  if (op.numerics == Numerics::kOfficial) s += " in the official numerics";
  return s;
}

// The first operator `backend` lacks, or null.
const RequiredOperator* first_missing(const Backend& backend,
                                      const std::vector<RequiredOperator>& ops) {
  for (const RequiredOperator& r : ops)
    if (!backend.supports(r.op)) return &r;
  return nullptr;
}

std::unique_ptr<Backend> choose_backend(const std::string& name,
                                        const std::vector<RequiredOperator>& ops) {
  const std::vector<std::string> candidates =
      name == "best" ? best_backend_candidates() : std::vector<std::string>{name};
  std::string refused;
  for (const std::string& candidate : candidates) {
    auto backend = create_backend(candidate);
    if (name != "best") throw_if_error(backend.status());
    if (!backend) continue;
    const RequiredOperator* missing = first_missing(*backend.value(), ops);
    if (!missing) return std::move(backend.value());
    refused += (refused.empty() ? "" : "; ") + std::string("backend \"") +
               std::string(backend.value()->name()) + "\" lacks operator " + describe(missing->op) +
               " (needed by " + missing->needed_by + ")";
  }
  fail(StatusCode::kUnsupported, refused.empty() ? "no backend available" : refused);
}
// See Model::fingerprint.
uint64_t model_fingerprint(const ModelConfig& c, const ModelWeights& w) {
  uint64_t h = fnv1a64(kFnvOffset, model_config_to_json(c));
  std::vector<uint8_t> codes;
  auto sample = [&](const Linear& l) {
    if (l.out == 0) return;
    codes.resize(size_t(l.row_bytes()));
    for (int64_t r : {int64_t(0), l.out - 1}) {
      l.copy_row_codes(r, codes.data());  // the same whatever the layout
      h = fnv1a64(h, codes.data(), codes.size());
    }
    if (l.scales) h = fnv1a64(h, l.scale_row(0), size_t(l.scale_cols));
  };
  sample(w.embed);
  sample(w.head);
  for (const LayerWeights& L : w.layers) sample(L.wq_a);
  return h;
}

}  // namespace

std::vector<RequiredOperator> required_operators(const ModelConfig& c, const ModelWeights& w,
                                                 Numerics numerics) {
  std::vector<RequiredOperator> out;
  auto add = [&](OpDesc op, const std::string& user) {
    op.numerics = numerics;
    for (const RequiredOperator& r : out)
      if (r.op.kind == op.kind && r.op.weight_format == op.weight_format) return;
    out.push_back({op, user});
  };
  auto gemm = [&](const Linear& l, const std::string& user) {
    add({OpKind::kGemm, l.format}, user);
  };
  add({OpKind::kEmbed, w.embed.format}, "embed.weight");
  for (OpKind k : {OpKind::kRmsNorm, OpKind::kRope, OpKind::kAttention, OpKind::kMhcPre,
                   OpKind::kMhcPost, OpKind::kMhcHead, OpKind::kSwiglu})
    add({k, WeightFormat::kF32}, "every layer");
  add({OpKind::kGemm, WeightFormat::kF32}, "mHC and the indexer's key scoring");
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& L = w.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& [l, name] : {std::pair{&L.wq_a, "attn.wq_a"},
                                  {&L.wq_b, "attn.wq_b"},
                                  {&L.wkv, "attn.wkv"},
                                  {&L.wo_a, "attn.wo_a"},
                                  {&L.wo_b, "attn.wo_b"},
                                  {&L.gate, "ffn.gate"}})
      gemm(*l, p + name);
    if (L.compressor) {
      add({OpKind::kCompressPool, WeightFormat::kF32}, p + "attn.compressor");
      gemm(L.compressor->wkv, p + "attn.compressor.wkv");
    }
    if (L.indexer) {
      add({OpKind::kIndexerTopk, WeightFormat::kF32}, p + "attn.indexer");
      gemm(L.indexer->wq_b, p + "attn.indexer.wq_b");
      gemm(L.indexer->weights_proj, p + "attn.indexer.weights_proj");
      gemm(L.indexer->compressor.wkv, p + "attn.indexer.compressor.wkv");
    }
    for (size_t e = 0; e < L.experts.size(); ++e)
      gemm(L.experts[e].w1, p + "ffn.experts." + std::to_string(e) + ".w1");
    if (L.shared_expert) gemm(L.shared_expert->w1, p + "ffn.shared_experts.w1");
  }
  gemm(w.head, "head.weight");
  (void)c;
  return out;
}

size_t available_memory_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
  std::fclose(f);
  return kib * 1024;
}

Result<std::shared_ptr<const Model>> Model::finish(
    std::shared_ptr<Model> model, const ModelLoadOptions& options,
    const std::function<void(int64_t, int64_t)>& repack_progress) {
  return capture_result([&]() -> std::shared_ptr<const Model> {
    check_options(options);
    throw_if_error(validate_model_config(model->config_));
    model->backend_ = choose_backend(
        options.backend, required_operators(model->config_, model->weights_, options.numerics));
    if (options.repack_weights) {
      const Backend& backend = *model->backend_;
      relayout_gemm_weights(
          model->weights_,
          [&](const WeightView& w) { return backend.gemm_weight_layout(w, options.numerics); },
          repack_progress);
    }
    model->n_threads_ = options.n_threads;
    model->numerics_ = options.numerics;
    model->fingerprint_ = model_fingerprint(model->config_, model->weights_);
    const ModelConfig& c = model->config_;
    if (model->official()) {
      // The official code's fp32 frequencies: YaRN only on compressed layers.
      const auto& rs = c.rope_scaling;
      model->theta_window_ = ops::official::rope_frequencies(c.qk_rope_head_dim, c.rope_theta,
                                                             false, 1.0, 0, 32.0, 1.0);
      model->theta_compressed_ = ops::official::rope_frequencies(
          c.qk_rope_head_dim, c.compress_rope_theta, c.has_rope_scaling, rs.factor,
          rs.original_max_position_embeddings, rs.beta_fast, rs.beta_slow);
      return model;
    }
    ops::RopeParams window{c.qk_rope_head_dim, c.rope_theta};
    ops::RopeParams compressed{c.qk_rope_head_dim, c.compress_rope_theta};
    if (c.has_rope_scaling) {
      compressed.yarn = true;
      compressed.factor = c.rope_scaling.factor;
      compressed.original_max_position = c.rope_scaling.original_max_position_embeddings;
      compressed.beta_fast = c.rope_scaling.beta_fast;
      compressed.beta_slow = c.rope_scaling.beta_slow;
    }
    model->theta_window_ = ops::rope_frequencies(window);
    model->theta_compressed_ = ops::rope_frequencies(compressed);
    return model;
  });
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& dir,
                                                 const ModelLoadOptions& options) {
  auto model = std::shared_ptr<Model>(new Model());
  // One progress over both phases: the layers read, then (repacking) as many steps again for
  // the matrices copied.
  int64_t groups = 0;
  LoadProgress reading;
  std::function<void(int64_t, int64_t)> repacking;
  if (options.progress) {
    const int64_t phases = options.repack_weights ? 2 : 1;
    reading = [&groups, &options, phases](int64_t done, int64_t total) {
      groups = total;
      options.progress(done, phases * total);
    };
    repacking = [&groups, &options](int64_t done, int64_t total) {
      options.progress(total > 0 ? groups + done * groups / total : 2 * groups, 2 * groups);
    };
  }
  Status loaded = capture_status([&] {
    check_options(options);  // before the expensive part
    auto config = load_model_config(dir);
    throw_if_error(config.status());
    model->config_ = std::move(config.value());
    auto opened = Checkpoint::open(dir);
    throw_if_error(opened.status());
    auto checkpoint = std::make_shared<const Checkpoint>(std::move(opened.value()));
    throw_if_error(check_checkpoint(*checkpoint, model->config_));
    check_memory(estimate_resident_bytes(*checkpoint, model->config_), options);
    auto weights = load_weights(checkpoint, model->config_, reading);
    throw_if_error(weights.status());
    model->weights_ = std::move(weights.value());
  });
  if (!loaded) return loaded;
  return finish(std::move(model), options, repacking);
}

Result<std::shared_ptr<const Model>> Model::from_weights(ModelConfig config, ModelWeights weights,
                                                         const ModelLoadOptions& options) {
  auto model = std::shared_ptr<Model>(new Model());
  model->config_ = std::move(config);
  model->weights_ = std::move(weights);
  return finish(std::move(model), options);
}

}  // namespace dsv4
