#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4 {
namespace {

bool is_float_dtype(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

WeightFormat float_format(DType t) {
  return t == DType::kF32    ? WeightFormat::kF32
         : t == DType::kBF16 ? WeightFormat::kBF16
                             : WeightFormat::kF16;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

[[noreturn]] void mismatch(const std::string& tensor, const std::string& what) {
  fail(StatusCode::kModelMismatch, "tensor \"" + tensor + "\": " + what);
}

ConstTensorView require(const Checkpoint& checkpoint, const std::string& name) {
  const auto entry = checkpoint.find(name);
  if (!entry.info) mismatch(name, "missing from the checkpoint");
  return checkpoint.view(entry);
}

void expect_shape(const std::string& name, const ConstTensorView& view, const Shape& expected) {
  if (view.shape != expected)
    mismatch(name,
             "shape " + shape_to_string(view.shape) + ", expected " + shape_to_string(expected));
}

void expect_scale(const Checkpoint& checkpoint, const std::string& name, const Shape& expected) {
  const ConstTensorView scale = require(checkpoint, name);
  if (scale.dtype != DType::kF8E8M0 && scale.dtype != DType::kF32)
    mismatch(name, "dtype " + std::string(dtype_name(scale.dtype)) + ", expected F8_E8M0 or F32");
  expect_shape(name, scale, expected);
}

WeightFormat check_matrix(const Checkpoint& checkpoint, const TensorSpec& spec) {
  const std::string weight_name = spec.name + ".weight";
  const std::string scale_name = spec.name + ".scale";
  const ConstTensorView w = require(checkpoint, weight_name);
  const int64_t out = spec.shape[0];
  const int64_t in = spec.shape[1];
  if (is_float_dtype(w.dtype)) {
    expect_shape(weight_name, w, spec.shape);
    return float_format(w.dtype);
  }
  if (w.dtype == DType::kF8E4M3) {
    expect_shape(weight_name, w, spec.shape);
    expect_scale(checkpoint, scale_name, {ceil_div(out, 128), ceil_div(in, 128)});
    return WeightFormat::kFp8Block;
  }
  const bool packed_bytes = w.dtype == DType::kI8 || w.dtype == DType::kU8;
  if (spec.role == TensorRole::kExpert && (packed_bytes || w.dtype == DType::kF4E2M1)) {
    if (in % 2 != 0)
      mismatch(weight_name, "FP4 weights need an even input size, got " + std::to_string(in));
    expect_shape(weight_name, w, packed_bytes ? Shape{out, in / 2} : spec.shape);
    expect_scale(checkpoint, scale_name, {out, ceil_div(in, 32)});
    return WeightFormat::kFp4Block;
  }
  mismatch(weight_name,
           "dtype " + std::string(dtype_name(w.dtype)) + " is not accepted here (expected " +
               (spec.role == TensorRole::kExpert ? "F32/BF16/F16, F8_E4M3 or packed FP4 (I8)"
                                                 : "F32/BF16/F16 or F8_E4M3") +
               ")");
}

WeightFormat check_tensor_or_throw(const Checkpoint& checkpoint, const TensorSpec& spec) {
  switch (spec.role) {
    case TensorRole::kLinear:
    case TensorRole::kExpert:
      return check_matrix(checkpoint, spec);
    case TensorRole::kFloat: {
      const ConstTensorView v = require(checkpoint, spec.name);
      if (!is_float_dtype(v.dtype))
        mismatch(spec.name,
                 "dtype " + std::string(dtype_name(v.dtype)) + ", expected F32, BF16 or F16");
      expect_shape(spec.name, v, spec.shape);
      return float_format(v.dtype);
    }
    case TensorRole::kTokenTable: {
      const ConstTensorView v = require(checkpoint, spec.name);
      if (v.dtype != DType::kI32 && v.dtype != DType::kI64)
        mismatch(spec.name, "dtype " + std::string(dtype_name(v.dtype)) + ", expected I32 or I64");
      expect_shape(spec.name, v, spec.shape);
      return WeightFormat::kF32;
    }
  }
  mismatch(spec.name, "unknown role");
}

class SchemaBuilder {
 public:
  explicit SchemaBuilder(std::vector<TensorSpec>& out) : out_(out) {}
  void add(std::string name, Shape shape, TensorRole role, int layer = -1) {
    out_.push_back({std::move(name), std::move(shape), role, layer});
  }

 private:
  std::vector<TensorSpec>& out_;
};

void add_mhc_site(SchemaBuilder& b, const std::string& prefix, int64_t n, int64_t D, int layer) {
  b.add(prefix + "_fn", {(2 + n) * n, n * D}, TensorRole::kFloat, layer);
  b.add(prefix + "_base", {(2 + n) * n}, TensorRole::kFloat, layer);
  b.add(prefix + "_scale", {3}, TensorRole::kFloat, layer);
}

void add_compressor(SchemaBuilder& b, const std::string& prefix, int64_t width, int64_t out_dim,
                    int64_t m, int64_t D, int layer) {
  b.add(prefix + ".wkv.weight", {width, D}, TensorRole::kFloat, layer);
  b.add(prefix + ".wgate.weight", {width, D}, TensorRole::kFloat, layer);
  b.add(prefix + ".norm.weight", {out_dim}, TensorRole::kFloat, layer);
  b.add(prefix + ".ape", {m, width}, TensorRole::kFloat, layer);
}

void add_layer(SchemaBuilder& b, const ModelConfig& c, int layer) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t D = c.hidden_size, n = c.hc_mult, H = c.num_attention_heads, d = c.head_dim;
  const int64_t m = c.compress_ratio(layer);
  b.add(p + "attn_norm.weight", {D}, TensorRole::kFloat, layer);
  b.add(p + "ffn_norm.weight", {D}, TensorRole::kFloat, layer);
  add_mhc_site(b, p + "hc_attn", n, D, layer);
  add_mhc_site(b, p + "hc_ffn", n, D, layer);

  b.add(p + "attn.wq_a", {c.q_lora_rank, D}, TensorRole::kLinear, layer);
  b.add(p + "attn.q_norm.weight", {c.q_lora_rank}, TensorRole::kFloat, layer);
  b.add(p + "attn.wq_b", {H * d, c.q_lora_rank}, TensorRole::kLinear, layer);
  b.add(p + "attn.wkv", {d, D}, TensorRole::kLinear, layer);
  b.add(p + "attn.kv_norm.weight", {d}, TensorRole::kFloat, layer);
  b.add(p + "attn.wo_a", {c.o_groups * c.o_lora_rank, H * d / c.o_groups}, TensorRole::kLinear,
        layer);
  b.add(p + "attn.wo_b", {D, c.o_groups * c.o_lora_rank}, TensorRole::kLinear, layer);
  b.add(p + "attn.attn_sink", {H}, TensorRole::kFloat, layer);
  if (m > 0) {
    const bool csa = m == kCsaCompressRatio;
    add_compressor(b, p + "attn.compressor", csa ? 2 * d : d, d, m, D, layer);
    if (csa) {
      const int64_t ci = c.index_head_dim;
      b.add(p + "attn.indexer.wq_b", {c.index_n_heads * ci, c.q_lora_rank}, TensorRole::kLinear,
            layer);
      b.add(p + "attn.indexer.weights_proj.weight", {c.index_n_heads, D}, TensorRole::kFloat,
            layer);
      add_compressor(b, p + "attn.indexer.compressor", 2 * ci, ci, m, D, layer);
    }
  }

  const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
  b.add(p + "ffn.gate.weight", {E, D}, TensorRole::kFloat, layer);
  if (c.is_hash_layer(layer)) {
    b.add(p + "ffn.gate.tid2eid", {c.vocab_size, c.num_experts_per_tok}, TensorRole::kTokenTable,
          layer);
  } else {
    b.add(p + "ffn.gate.bias", {E}, TensorRole::kFloat, layer);
  }
  for (int64_t e = 0; e < E; ++e) {
    const std::string ep = p + "ffn.experts." + std::to_string(e) + ".";
    b.add(ep + "w1", {I, D}, TensorRole::kExpert, layer);
    b.add(ep + "w2", {D, I}, TensorRole::kExpert, layer);
    b.add(ep + "w3", {I, D}, TensorRole::kExpert, layer);
  }
  if (c.n_shared_experts > 0) {
    const int64_t Is = I * c.n_shared_experts;
    b.add(p + "ffn.shared_experts.w1", {Is, D}, TensorRole::kLinear, layer);
    b.add(p + "ffn.shared_experts.w2", {D, Is}, TensorRole::kLinear, layer);
    b.add(p + "ffn.shared_experts.w3", {Is, D}, TensorRole::kLinear, layer);
  }
}

}  // namespace

std::string stored_weight_name(const TensorSpec& spec) {
  return spec.role == TensorRole::kLinear || spec.role == TensorRole::kExpert
             ? spec.name + ".weight"
             : spec.name;
}

std::vector<TensorSpec> checkpoint_schema(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  SchemaBuilder b(specs);
  const int64_t D = c.hidden_size, n = c.hc_mult;
  b.add("embed.weight", {c.vocab_size, D}, TensorRole::kFloat);
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) add_layer(b, c, layer);
  b.add("norm.weight", {D}, TensorRole::kFloat);
  b.add("hc_head_fn", {n, n * D}, TensorRole::kFloat);
  b.add("hc_head_base", {n}, TensorRole::kFloat);
  b.add("hc_head_scale", {1}, TensorRole::kFloat);
  b.add("head.weight", {c.vocab_size, D}, TensorRole::kFloat);
  return specs;
}

Result<WeightFormat> check_tensor(const Checkpoint& checkpoint, const TensorSpec& spec) {
  return capture_result([&] { return check_tensor_or_throw(checkpoint, spec); });
}

Status check_checkpoint(const Checkpoint& checkpoint, const ModelConfig& config) {
  return capture_status([&] {
    for (const TensorSpec& spec : checkpoint_schema(config))
      (void)check_tensor_or_throw(checkpoint, spec);
  });
}

}  // namespace dsv4
