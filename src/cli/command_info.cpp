// dsv4 info --model DIR
#include <cstdio>

#include "cli.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/model_summary.hpp"

namespace dsv4::cli {
namespace {

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000)
    std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
  else if (n >= 1000000)
    std::snprintf(buf, sizeof buf, "%.2fM", double(n) / 1e6);
  else if (n >= 1000)
    std::snprintf(buf, sizeof buf, "%.2fK", double(n) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

void print_config(const ModelConfig& c) {
  std::printf("config\n");
  std::printf("  vocab_size            %lld\n", static_cast<long long>(c.vocab_size));
  std::printf("  hidden_size (D)       %lld\n", static_cast<long long>(c.hidden_size));
  std::printf("  layers                %lld (+%lld MTP)\n",
              static_cast<long long>(c.num_hidden_layers),
              static_cast<long long>(c.num_nextn_predict_layers));
  std::printf("  heads x head_dim      %lld x %lld (rope %lld), 1 shared KV head\n",
              static_cast<long long>(c.num_attention_heads), static_cast<long long>(c.head_dim),
              static_cast<long long>(c.qk_rope_head_dim));
  std::printf("  q_lora_rank           %lld\n", static_cast<long long>(c.q_lora_rank));
  std::printf("  output groups x rank  %lld x %lld\n", static_cast<long long>(c.o_groups),
              static_cast<long long>(c.o_lora_rank));
  std::printf("  sliding_window        %lld\n", static_cast<long long>(c.sliding_window));
  std::printf("  indexer               %lld heads x %lld, top-%lld\n",
              static_cast<long long>(c.index_n_heads), static_cast<long long>(c.index_head_dim),
              static_cast<long long>(c.index_topk));
  std::printf(
      "  experts               %lld routed (top-%lld, %s, scale %g) + %lld shared, width %lld\n",
      static_cast<long long>(c.n_routed_experts), static_cast<long long>(c.num_experts_per_tok),
      std::string(scoring_func_name(c.scoring_func)).c_str(), c.routed_scaling_factor,
      static_cast<long long>(c.n_shared_experts), static_cast<long long>(c.moe_intermediate_size));
  std::printf("  hash-routed layers    %lld\n", static_cast<long long>(c.num_hash_layers));
  std::printf("  swiglu_limit          %g\n", c.swiglu_limit);
  std::printf("  mHC                   %lld streams, %lld Sinkhorn iterations, eps %g\n",
              static_cast<long long>(c.hc_mult), static_cast<long long>(c.hc_sinkhorn_iters),
              c.hc_eps);
  std::printf("  rope_theta            %g (SWA layers), %g + YaRN x%g (compressed layers)\n",
              c.rope_theta, c.compress_rope_theta,
              c.has_rope_scaling ? c.rope_scaling.factor : 1.0);
  std::printf("  rms_norm_eps          %g\n", c.rms_norm_eps);
  if (c.quantization.present)
    std::printf("  quantization          %s weights, %s scales, blocks %lldx%lld, experts %s\n",
                c.quantization.fmt.c_str(), c.quantization.scale_fmt.c_str(),
                static_cast<long long>(c.quantization.weight_block_out),
                static_cast<long long>(c.quantization.weight_block_in),
                c.expert_dtype.empty() ? "same" : c.expert_dtype.c_str());
}

void print_layers(const ModelSummary& s) {
  std::printf("\nlayers\n");
  std::printf("  %5s  %-4s  %8s  %-7s  %10s  %-14s  %-14s\n", "layer", "attn", "compress",
              "routing", "params", "attn weights", "expert weights");
  for (const LayerSummary& l : s.layers) {
    std::printf("  %5d  %-4s  %8s  %-7s  %10s  %-14s  %-14s\n", l.layer,
                std::string(attention_kind_name(l.attention)).c_str(),
                l.compress_ratio == 0 ? "-" : ("1/" + std::to_string(l.compress_ratio)).c_str(),
                l.hash_routing ? "hash" : "top-k", human_count(l.n_params).c_str(),
                std::string(weight_format_traits(l.attention_format).name).c_str(),
                std::string(weight_format_traits(l.expert_format).name).c_str());
  }
}

void print_totals(const ModelSummary& s, const Checkpoint& checkpoint) {
  std::printf("\nparameters: %s total (%lld), %s in embed + head\n",
              human_count(s.n_params_total).c_str(), static_cast<long long>(s.n_params_total),
              human_count(s.n_params_embedding).c_str());
  std::printf("\nstorage by dtype (%zu tensors in %zu file%s)\n", checkpoint.n_tensors(),
              checkpoint.n_files(), checkpoint.n_files() == 1 ? "" : "s");
  std::printf("  %-8s  %8s  %14s  %14s\n", "dtype", "tensors", "elements", "bytes");
  for (const auto& [dtype, usage] : s.by_dtype) {
    std::printf("  %-8s  %8lld  %14lld  %14lld\n", std::string(dtype_name(dtype)).c_str(),
                static_cast<long long>(usage.n_tensors), static_cast<long long>(usage.n_elements),
                static_cast<long long>(usage.n_bytes));
  }
  std::printf("  %-8s  %8s  %14s  %14lld\n", "total", "", "",
              static_cast<long long>(s.n_bytes_total));
  if (s.n_unused_tensors > 0)
    std::printf("  (%lld stored tensors are not used by the decoder stack, e.g. MTP layers)\n",
                static_cast<long long>(s.n_unused_tensors));
}

}  // namespace

int command_info(const Args& args) {
  const std::string dir = args.get("model");
  if (dir.empty()) {
    std::fprintf(stderr, "dsv4 info: --model DIR is required\n");
    return 2;
  }
  auto config = load_model_config(dir);
  if (!config) {
    std::fprintf(stderr, "dsv4 info: %s\n", config.status().to_string().c_str());
    return 1;
  }
  auto checkpoint = Checkpoint::open(dir);
  if (!checkpoint) {
    std::fprintf(stderr, "dsv4 info: %s\n", checkpoint.status().to_string().c_str());
    return 1;
  }
  auto summary = summarize_model(config.value(), checkpoint.value());
  if (!summary) {
    std::fprintf(stderr, "dsv4 info: %s\n", summary.status().to_string().c_str());
    return 1;
  }
  std::printf("model: %s\n\n", dir.c_str());
  print_config(config.value());
  print_layers(summary.value());
  print_totals(summary.value(), checkpoint.value());
  return 0;
}

}  // namespace dsv4::cli
