// dsv4 plan --model DIR | --preset NAME --context N [--kv-format F] [--ram BYTES]
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/memory_plan.hpp"

namespace dsv4::cli {
namespace {

std::string gib(int64_t bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f GiB", double(bytes) / double(int64_t(1) << 30));
  return buf;
}

void print_plan(const ModelConfig& c, const MemoryPlan& p, const std::string& what) {
  std::printf("dsv4 plan: %s, context %lld tokens, kv format %s\n", what.c_str(),
              static_cast<long long>(p.context), std::string(kv_format_name(p.kv_format)).c_str());
  std::printf("\nweights by dtype\n");
  for (const auto& [dtype, bytes] : p.weight_bytes)
    std::printf("  %-10s %18lld bytes  %14s\n", std::string(dtype_name(dtype)).c_str(),
                static_cast<long long>(bytes), gib(bytes).c_str());
  std::printf("  %-10s %18lld bytes  %14s\n", "total", static_cast<long long>(p.total_weight_bytes),
              gib(p.total_weight_bytes).c_str());

  std::printf("\nKV cache per layer (bytes)\n  %5s %5s %14s %16s %14s %10s\n", "layer", "attn",
              "window", "compressed", "indexer", "state");
  for (size_t l = 0; l < p.cache_bytes.size(); ++l) {
    const int64_t m = c.compress_ratio(int64_t(l));
    const auto& b = p.cache_bytes[l];
    std::printf("  %5zu %5s %14lld %16lld %14lld %10lld\n", l,
                m == 0 ? "SWA" : (m == kCsaCompressRatio ? "CSA" : "HCA"),
                static_cast<long long>(b[0]), static_cast<long long>(b[1]),
                static_cast<long long>(b[2]), static_cast<long long>(b[3]));
  }
  std::printf("\nKV cache by kind\n");
  for (int k = 0; k < kNumCacheKinds; ++k)
    std::printf("  %-12s %18lld bytes  %14s\n", std::string(cache_kind_name(CacheKind(k))).c_str(),
                static_cast<long long>(p.cache_by_kind[size_t(k)]),
                gib(p.cache_by_kind[size_t(k)]).c_str());
  std::printf("  %-12s %18lld bytes  %14s  (%.1f bytes per token of growth)\n", "total",
              static_cast<long long>(p.total_cache_bytes), gib(p.total_cache_bytes).c_str(),
              p.cache_bytes_per_token);
  std::printf(
      "\nV3.2-style dense MLA cache (%lld bf16 per token per layer, %lld layers): %lld "
      "bytes = %s\n",
      static_cast<long long>(kDenseMlaElements), static_cast<long long>(kDenseMlaLayers),
      static_cast<long long>(p.dense_mla_bytes), gib(p.dense_mla_bytes).c_str());
  if (p.dense_mla_bytes > 0)
    std::printf("this cache / dense MLA cache = %.3f (%.1f%%)\n",
                double(p.total_cache_bytes) / double(p.dense_mla_bytes),
                100.0 * double(p.total_cache_bytes) / double(p.dense_mla_bytes));
  if (p.ram_budget > 0)
    std::printf(
        "\nunder a RAM budget of %s for the cache: %s in RAM, %s beyond it (to spill to "
        "disk)\n",
        gib(p.ram_budget).c_str(), gib(p.cache_ram_bytes).c_str(), gib(p.cache_disk_bytes).c_str());
  std::printf("\nweights + cache = %s\n", gib(p.total_weight_bytes + p.total_cache_bytes).c_str());
}

}  // namespace

int command_plan(const Args& args) {
  int64_t context = 0, ram = 0;
  if (!parse_int(args.get("context"), &context) || context < 0) {
    std::fprintf(stderr, "dsv4 plan: --context N (tokens, >= 0) is required\n");
    return 2;
  }
  if (args.has("ram") && !parse_bytes(args.get("ram"), &ram)) {
    std::fprintf(stderr, "dsv4 plan: --ram takes bytes, optionally with K, M, G or T\n");
    return 2;
  }
  KvFormat format = KvFormat::kF32;
  if (args.has("kv-format") && !parse_kv_format(args.get("kv-format"), &format)) {
    std::fprintf(stderr, "dsv4 plan: --kv-format must be f32, bf16 or packed\n");
    return 2;
  }
  ModelConfig config;
  std::string what;
  Result<MemoryPlan> plan = Status(StatusCode::kInvalidArgument, "");
  if (args.has("model")) {
    const std::string dir = args.get("model");
    auto loaded = load_model_config(dir);
    if (!loaded) return report(loaded.status(), "plan");
    config = loaded.value();
    auto checkpoint = Checkpoint::open(dir);
    if (!checkpoint) return report(checkpoint.status(), "plan");
    plan = plan_memory(config, context, format, ram, &checkpoint.value());
    what = dir;
  } else if (args.has("preset")) {
    if (!preset_config(args.get("preset"), &config)) {
      std::fprintf(stderr,
                   "dsv4 plan: unknown preset %s (v4-flash, v4-pro, v4-flash-slice, "
                   "demo)\n",
                   args.get("preset").c_str());
      return 2;
    }
    plan = plan_memory(config, context, format, ram);
    what = args.get("preset") + " preset (weights in the official checkpoints' formats)";
  } else {
    std::fprintf(stderr, "dsv4 plan: --model DIR or --preset NAME is required\n");
    return 2;
  }
  if (!plan) return report(plan.status(), "plan");
  print_plan(config, plan.value(), what);
  return 0;
}

}  // namespace dsv4::cli
