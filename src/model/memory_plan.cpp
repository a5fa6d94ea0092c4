#include "dsv4/model/memory_plan.hpp"

#include <algorithm>

#include "dsv4/model/checkpoint_schema.hpp"
#include "dsv4/model/model_summary.hpp"

namespace dsv4 {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Stored bytes of one schema tensor in the official checkpoints' formats, by dtype.
void add_official_bytes(const TensorSpec& spec, std::map<DType, int64_t>& bytes) {
  int64_t numel = 1;
  for (int64_t d : spec.shape) numel *= d;
  const int64_t out = spec.shape.empty() ? 0 : spec.shape[0];
  const int64_t in = spec.shape.size() > 1 ? spec.shape[1] : 0;
  switch (spec.init) {
    case TensorInit::kLinear:
      bytes[DType::kF8E4M3] += numel;
      bytes[DType::kF8E8M0] += ceil_div(out, 128) * ceil_div(in, 128);
      return;
    case TensorInit::kExpert:
      bytes[DType::kI8] += numel / 2;
      bytes[DType::kF8E8M0] += out * ceil_div(in, 32);
      return;
    case TensorInit::kDense:
    case TensorInit::kEmbedding:
      bytes[DType::kBF16] += 2 * numel;
      return;
    case TensorInit::kTokenTable:
      bytes[DType::kI32] += 4 * numel;
      return;
    default:
      bytes[DType::kF32] += 4 * numel;
      return;
  }
}

}  // namespace

Result<MemoryPlan> plan_memory(const ModelConfig& c, int64_t context, KvFormat kv_format,
                               int64_t ram_budget, const Checkpoint* checkpoint) {
  if (context < 0) return Status(StatusCode::kInvalidArgument, "context must be >= 0");
  if (ram_budget < 0) return Status(StatusCode::kInvalidArgument, "the RAM budget must be >= 0");
  if (Status s = validate_model_config(c); !s) return s;
  return capture_result([&] {
    MemoryPlan plan;
    plan.context = context;
    plan.kv_format = kv_format;
    if (checkpoint) {
      auto summary = summarize_model(c, *checkpoint);
      throw_if_error(summary.status());
      for (const auto& [dtype, usage] : summary.value().by_dtype)
        plan.weight_bytes[dtype] = usage.n_bytes;
    } else {
      for (const TensorSpec& spec : checkpoint_schema(c))
        add_official_bytes(spec, plan.weight_bytes);
    }
    for (const auto& [dtype, bytes] : plan.weight_bytes) plan.total_weight_bytes += bytes;

    // The cache: each kind at its codec's size, as KvCache lays it out.
    const auto main = int64_t(main_entry_codec(c, kv_format).bytes());
    const auto indexer = int64_t(indexer_entry_codec(c, kv_format).bytes());
    double growth = 0.0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const int64_t m = c.compress_ratio(l);
      const bool csa = m == kCsaCompressRatio;
      std::array<int64_t, kNumCacheKinds> b{};
      b[size_t(CacheKind::kWindow)] = std::min(context, c.sliding_window) * main;
      if (m > 0) {
        b[size_t(CacheKind::kCompressed)] = context / m * main;
        growth += double(main) / double(m);
        auto state = int64_t(CompressorState::bytes_for(m, CompressorState::main_width(c, m), csa));
        if (csa) {
          b[size_t(CacheKind::kIndexer)] = context / m * indexer;
          growth += double(indexer) / double(m);
          state += int64_t(CompressorState::bytes_for(m, CompressorState::indexer_width(c), true));
        }
        b[size_t(CacheKind::kCompressorState)] = state;
      }
      for (int k = 0; k < kNumCacheKinds; ++k) {
        plan.cache_by_kind[size_t(k)] += b[size_t(k)];
        plan.total_cache_bytes += b[size_t(k)];
      }
      plan.cache_bytes.push_back(b);
    }
    plan.cache_bytes_per_token = growth;
    plan.dense_mla_bytes = context * kDenseMlaLayers * kDenseMlaElements * 2;
    plan.ram_budget = ram_budget;
    plan.cache_ram_bytes =
        ram_budget > 0 ? std::min(ram_budget, plan.total_cache_bytes) : plan.total_cache_bytes;
    plan.cache_disk_bytes = plan.total_cache_bytes - plan.cache_ram_bytes;
    return plan;
  });
}

}  // namespace dsv4
