#include "dsv4/model/weights.hpp"

#include <cmath>
#include <random>

#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4 {
namespace {

std::vector<float> to_float(const ConstTensorView& v) {
  std::vector<float> out(size_t(v.numel()));
  decode_to_float(v, out);
  return out;
}

class WeightReader {
 public:
  explicit WeightReader(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  ConstTensorView view(const std::string& name) const {
    const auto entry = checkpoint_.find(name);
    if (!entry.info)
      fail(StatusCode::kModelMismatch, "tensor \"" + name + "\": missing from the checkpoint");
    return checkpoint_.view(entry);
  }
  std::vector<float> vec(const std::string& name) const { return to_float(view(name)); }

  // A [out, in] matrix in whatever format the checkpoint stores it.
  Linear linear(const std::string& prefix, int64_t out, int64_t in, TensorRole role) const {
    TensorSpec spec{prefix, {out, in}, role};
    auto format = check_tensor(checkpoint_, spec);
    throw_if_error(format.status());
    Linear l{out, in, {}};
    const ConstTensorView w = view(prefix + ".weight");
    switch (format.value()) {
      case WeightFormat::kFp8Block:
        l.w = dequantize_fp8_block(w, view(prefix + ".scale"));
        break;
      case WeightFormat::kFp4Block:
        l.w = dequantize_fp4_block(w, view(prefix + ".scale"), in);
        break;
      default:
        l.w = to_float(w);
        break;
    }
    return l;
  }
  Linear dense(const std::string& name, int64_t out, int64_t in) const {
    return Linear{out, in, vec(name)};
  }

 private:
  const Checkpoint& checkpoint_;
};

MhcWeights read_mhc(const WeightReader& r, const std::string& prefix) {
  return {r.vec(prefix + "_fn"), r.vec(prefix + "_base"), r.vec(prefix + "_scale")};
}

CompressorWeights read_compressor(const WeightReader& r, const std::string& prefix, int64_t out_dim,
                                  bool overlap, int64_t D) {
  const int64_t width = overlap ? 2 * out_dim : out_dim;
  CompressorWeights c;
  c.wkv = r.dense(prefix + ".wkv.weight", width, D);
  c.wgate = r.dense(prefix + ".wgate.weight", width, D);
  c.ape = r.vec(prefix + ".ape");
  c.norm = r.vec(prefix + ".norm.weight");
  c.out_dim = out_dim;
  c.overlap = overlap;
  return c;
}

ExpertWeights read_expert(const WeightReader& r, const std::string& prefix, int64_t I, int64_t D,
                          TensorRole role) {
  return {r.linear(prefix + "w1", I, D, role), r.linear(prefix + "w2", D, I, role),
          r.linear(prefix + "w3", I, D, role)};
}

LayerWeights read_layer(const WeightReader& r, const ModelConfig& c, int layer) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t D = c.hidden_size, H = c.num_attention_heads, d = c.head_dim,
                m = c.compress_ratio(layer);
  LayerWeights L;
  L.attn_norm = r.vec(p + "attn_norm.weight");
  L.ffn_norm = r.vec(p + "ffn_norm.weight");
  L.hc_attn = read_mhc(r, p + "hc_attn");
  L.hc_ffn = read_mhc(r, p + "hc_ffn");
  L.wq_a = r.linear(p + "attn.wq_a", c.q_lora_rank, D, TensorRole::kLinear);
  L.q_norm = r.vec(p + "attn.q_norm.weight");
  L.wq_b = r.linear(p + "attn.wq_b", H * d, c.q_lora_rank, TensorRole::kLinear);
  L.wkv = r.linear(p + "attn.wkv", d, D, TensorRole::kLinear);
  L.kv_norm = r.vec(p + "attn.kv_norm.weight");
  L.wo_a = r.linear(p + "attn.wo_a", c.o_groups * c.o_lora_rank, H * d / c.o_groups,
                    TensorRole::kLinear);
  L.wo_b = r.linear(p + "attn.wo_b", D, c.o_groups * c.o_lora_rank, TensorRole::kLinear);
  L.attn_sink = r.vec(p + "attn.attn_sink");
  if (m > 0) {
    const bool csa = m == kCsaCompressRatio;
    L.compressor = read_compressor(r, p + "attn.compressor", d, csa, D);
    if (csa) {
      IndexerWeights ix;
      ix.wq_b = r.linear(p + "attn.indexer.wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank,
                         TensorRole::kLinear);
      ix.weights_proj = r.dense(p + "attn.indexer.weights_proj.weight", c.index_n_heads, D);
      ix.compressor = read_compressor(r, p + "attn.indexer.compressor", c.index_head_dim, true, D);
      L.indexer = std::move(ix);
    }
  }
  L.gate = r.dense(p + "ffn.gate.weight", c.n_routed_experts, D);
  if (c.is_hash_layer(layer)) {
    const ConstTensorView t = r.view(p + "ffn.gate.tid2eid");
    L.tid2eid.resize(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float e = element_as_float(t, i);
      if (!(e >= 0.0f && e < float(c.n_routed_experts)))
        fail(StatusCode::kModelMismatch, "tensor \"" + p + "ffn.gate.tid2eid\": expert id " +
                                             std::to_string(e) + " out of range [0, " +
                                             std::to_string(c.n_routed_experts) + ")");
      L.tid2eid[size_t(i)] = int32_t(e);
    }
  } else {
    L.gate_bias = r.vec(p + "ffn.gate.bias");
  }
  const int64_t I = c.moe_intermediate_size;
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    L.experts.push_back(
        read_expert(r, p + "ffn.experts." + std::to_string(e) + ".", I, D, TensorRole::kExpert));
  if (c.n_shared_experts > 0)
    L.shared_expert =
        read_expert(r, p + "ffn.shared_experts.", I * c.n_shared_experts, D, TensorRole::kLinear);
  return L;
}

}  // namespace

std::vector<float> dequantize_fp8_block(const ConstTensorView& weight,
                                        const ConstTensorView& scale) {
  const int64_t out = weight.shape[0], in = weight.shape[1], scale_cols = scale.shape[1];
  std::vector<float> w(size_t(out * in));
  const auto* codes = reinterpret_cast<const uint8_t*>(weight.data);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      w[size_t(o * in + i)] = fp8_e4m3_to_float(codes[o * in + i]) *
                              element_as_float(scale, (o / 128) * scale_cols + i / 128);
  return w;
}

std::vector<float> dequantize_fp4_block(const ConstTensorView& weight, const ConstTensorView& scale,
                                        int64_t in) {
  const int64_t out = weight.shape[0], scale_cols = scale.shape[1];
  std::vector<float> w(size_t(out * in));
  const auto* packed = reinterpret_cast<const uint8_t*>(weight.data);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      w[size_t(o * in + i)] = fp4_e2m1_packed_at(packed + o * (in / 2), size_t(i)) *
                              element_as_float(scale, o * scale_cols + i / 32);
  return w;
}

Result<ModelWeights> load_weights(const Checkpoint& checkpoint, const ModelConfig& config) {
  return capture_result([&] {
    WeightReader r(checkpoint);
    ModelWeights w;
    w.embed = r.vec("embed.weight");
    w.layers.resize(size_t(config.num_hidden_layers));
    Status first_error;
    // Layers are independent: dequantise them in parallel.
#pragma omp parallel for schedule(dynamic)
    for (int layer = 0; layer < int(config.num_hidden_layers); ++layer) {
      Status s = capture_status([&] { w.layers[size_t(layer)] = read_layer(r, config, layer); });
#pragma omp critical
      if (!s && first_error.is_ok()) first_error = s;
    }
    throw_if_error(first_error);
    w.norm = r.vec("norm.weight");
    w.hc_head = {r.vec("hc_head_fn"), r.vec("hc_head_base"), r.vec("hc_head_scale")};
    w.head = r.dense("head.weight", config.vocab_size, config.hidden_size);
    return w;
  });
}

// ---- random weights ----
namespace {

class RandomFill {
 public:
  explicit RandomFill(uint64_t seed) : rng_(seed) {}
  std::vector<float> normal(int64_t n, float stddev) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng_);
    return v;
  }
  std::vector<float> constant(int64_t n, float value) {
    return std::vector<float>(size_t(n), value);
  }
  std::vector<float> around_one(int64_t n) {
    auto v = normal(n, 0.05f);
    for (auto& x : v) x += 1.0f;
    return v;
  }
  // Scaled so outputs keep roughly unit variance: stddev 1/sqrt(in).
  Linear linear(int64_t out, int64_t in) {
    return {out, in, normal(out * in, 1.0f / std::sqrt(float(in)))};
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

MhcWeights random_mhc(RandomFill& f, int64_t rows, int64_t cols, int64_t n_scales) {
  return {f.normal(rows * cols, 0.02f), f.normal(rows, 0.5f), f.constant(n_scales, 1.0f)};
}

CompressorWeights random_compressor(RandomFill& f, int64_t out_dim, bool overlap, int64_t m,
                                    int64_t D) {
  const int64_t width = overlap ? 2 * out_dim : out_dim;
  return {f.linear(width, D),
          f.linear(width, D),
          f.normal(m * width, 0.1f),
          f.around_one(out_dim),
          out_dim,
          overlap};
}

}  // namespace

ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  RandomFill f(seed);
  const int64_t D = c.hidden_size, n = c.hc_mult, H = c.num_attention_heads, d = c.head_dim;
  const int64_t I = c.moe_intermediate_size;
  ModelWeights w;
  w.embed = f.normal(c.vocab_size * D, 1.0f);
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    LayerWeights L;
    const int64_t m = c.compress_ratio(layer);
    L.attn_norm = f.around_one(D);
    L.ffn_norm = f.around_one(D);
    L.hc_attn = random_mhc(f, (2 + n) * n, n * D, 3);
    L.hc_ffn = random_mhc(f, (2 + n) * n, n * D, 3);
    L.wq_a = f.linear(c.q_lora_rank, D);
    L.q_norm = f.around_one(c.q_lora_rank);
    L.wq_b = f.linear(H * d, c.q_lora_rank);
    L.wkv = f.linear(d, D);
    L.kv_norm = f.around_one(d);
    L.wo_a = f.linear(c.o_groups * c.o_lora_rank, H * d / c.o_groups);
    L.wo_b = f.linear(D, c.o_groups * c.o_lora_rank);
    L.attn_sink = f.normal(H, 1.0f);
    if (m > 0) {
      const bool csa = m == kCsaCompressRatio;
      L.compressor = random_compressor(f, d, csa, m, D);
      if (csa)
        L.indexer = IndexerWeights{f.linear(c.index_n_heads * c.index_head_dim, c.q_lora_rank),
                                   f.linear(c.index_n_heads, D),
                                   random_compressor(f, c.index_head_dim, true, m, D)};
    }
    L.gate = f.linear(c.n_routed_experts, D);
    if (c.is_hash_layer(layer)) {
      L.tid2eid.resize(size_t(c.vocab_size * c.num_experts_per_tok));
      for (int64_t t = 0; t < c.vocab_size; ++t)
        for (int64_t j = 0; j < c.num_experts_per_tok; ++j)
          L.tid2eid[size_t(t * c.num_experts_per_tok + j)] = int32_t(
              (t * 7 + j * (c.n_routed_experts / c.num_experts_per_tok)) % c.n_routed_experts);
    } else {
      L.gate_bias = f.normal(c.n_routed_experts, 0.1f);
    }
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      L.experts.push_back({f.linear(I, D), f.linear(D, I), f.linear(I, D)});
    if (c.n_shared_experts > 0) {
      const int64_t Is = I * c.n_shared_experts;
      L.shared_expert = ExpertWeights{f.linear(Is, D), f.linear(D, Is), f.linear(Is, D)};
    }
    w.layers.push_back(std::move(L));
  }
  w.norm = f.around_one(D);
  w.hc_head = {f.normal(n * n * D, 0.02f), f.normal(n, 0.5f), f.constant(1, 1.0f)};
  w.head = f.linear(c.vocab_size, D);
  return w;
}

}  // namespace dsv4
