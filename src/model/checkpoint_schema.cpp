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
  void add(std::string name, Shape shape, TensorRole role, int layer, TensorInit init,
           std::function<WeightSlot(ModelWeights&)> slot) {
    out_.push_back({std::move(name), std::move(shape), role, layer, init, std::move(slot)});
  }

 private:
  std::vector<TensorSpec>& out_;
};

// Slot helpers: a member of layer `l`, of its compressor, its indexer, or an expert.
template <class F>
std::function<WeightSlot(ModelWeights&)> in_layer(int l, F get) {
  return [l, get](ModelWeights& w) -> WeightSlot { return get(w.layers[size_t(l)]); };
}

void add_mhc_site(SchemaBuilder& b, const std::string& prefix, int64_t n, int64_t D, int layer,
                  MhcWeights LayerWeights::*site) {
  b.add(prefix + "_fn", {(2 + n) * n, n * D}, TensorRole::kFloat, layer, TensorInit::kMhcMatrix,
        in_layer(layer, [site](LayerWeights& L) { return &(L.*site).fn; }));
  b.add(prefix + "_base", {(2 + n) * n}, TensorRole::kFloat, layer, TensorInit::kMhcBase,
        in_layer(layer, [site](LayerWeights& L) { return &(L.*site).base; }));
  b.add(prefix + "_scale", {3}, TensorRole::kFloat, layer, TensorInit::kOnes,
        in_layer(layer, [site](LayerWeights& L) { return &(L.*site).scale; }));
}

// `get` picks the compressor inside a layer (the attention's, or the indexer's).
template <class Get>
void add_compressor(SchemaBuilder& b, const std::string& prefix, int64_t width, int64_t out_dim,
                    int64_t m, int64_t D, int layer, Get get) {
  b.add(prefix + ".wkv.weight", {width, D}, TensorRole::kFloat, layer, TensorInit::kDense,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).wkv; }));
  b.add(prefix + ".wgate.weight", {width, D}, TensorRole::kFloat, layer, TensorInit::kDense,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).wgate; }));
  b.add(prefix + ".norm.weight", {out_dim}, TensorRole::kFloat, layer, TensorInit::kNearOne,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).norm; }));
  b.add(prefix + ".ape", {m, width}, TensorRole::kFloat, layer, TensorInit::kApe,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).ape; }));
}

void add_expert(SchemaBuilder& b, const std::string& prefix, int64_t I, int64_t D, int layer,
                TensorRole role, TensorInit init,
                std::function<ExpertWeights&(LayerWeights&)> get) {
  b.add(prefix + "w1", {I, D}, role, layer, init,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).w1; }));
  b.add(prefix + "w2", {D, I}, role, layer, init,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).w2; }));
  b.add(prefix + "w3", {I, D}, role, layer, init,
        in_layer(layer, [get](LayerWeights& L) { return &get(L).w3; }));
}

void add_layer(SchemaBuilder& b, const ModelConfig& c, int layer) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t D = c.hidden_size, n = c.hc_mult, H = c.num_attention_heads, d = c.head_dim;
  const int64_t m = c.compress_ratio(layer);
  using L = LayerWeights;
  auto field = [layer](auto member) {
    return in_layer(layer, [member](LayerWeights& lw) { return &(lw.*member); });
  };
  b.add(p + "attn_norm.weight", {D}, TensorRole::kFloat, layer, TensorInit::kNearOne,
        field(&L::attn_norm));
  b.add(p + "ffn_norm.weight", {D}, TensorRole::kFloat, layer, TensorInit::kNearOne,
        field(&L::ffn_norm));
  add_mhc_site(b, p + "hc_attn", n, D, layer, &L::hc_attn);
  add_mhc_site(b, p + "hc_ffn", n, D, layer, &L::hc_ffn);

  b.add(p + "attn.wq_a", {c.q_lora_rank, D}, TensorRole::kLinear, layer, TensorInit::kLinear,
        field(&L::wq_a));
  b.add(p + "attn.q_norm.weight", {c.q_lora_rank}, TensorRole::kFloat, layer, TensorInit::kNearOne,
        field(&L::q_norm));
  b.add(p + "attn.wq_b", {H * d, c.q_lora_rank}, TensorRole::kLinear, layer, TensorInit::kLinear,
        field(&L::wq_b));
  b.add(p + "attn.wkv", {d, D}, TensorRole::kLinear, layer, TensorInit::kLinear, field(&L::wkv));
  b.add(p + "attn.kv_norm.weight", {d}, TensorRole::kFloat, layer, TensorInit::kNearOne,
        field(&L::kv_norm));
  b.add(p + "attn.wo_a", {c.o_groups * c.o_lora_rank, H * d / c.o_groups}, TensorRole::kLinear,
        layer, TensorInit::kLinear, field(&L::wo_a));
  b.add(p + "attn.wo_b", {D, c.o_groups * c.o_lora_rank}, TensorRole::kLinear, layer,
        TensorInit::kLinear, field(&L::wo_b));
  b.add(p + "attn.attn_sink", {H}, TensorRole::kFloat, layer, TensorInit::kSink,
        field(&L::attn_sink));
  if (m > 0) {
    const bool csa = m == kCsaCompressRatio;
    add_compressor(b, p + "attn.compressor", csa ? 2 * d : d, d, m, D, layer,
                   [](LayerWeights& lw) -> CompressorWeights& { return *lw.compressor; });
    if (csa) {
      const int64_t ci = c.index_head_dim;
      b.add(p + "attn.indexer.wq_b", {c.index_n_heads * ci, c.q_lora_rank}, TensorRole::kLinear,
            layer, TensorInit::kLinear,
            in_layer(layer, [](LayerWeights& lw) { return &lw.indexer->wq_b; }));
      b.add(p + "attn.indexer.weights_proj.weight", {c.index_n_heads, D}, TensorRole::kFloat, layer,
            TensorInit::kDense,
            in_layer(layer, [](LayerWeights& lw) { return &lw.indexer->weights_proj; }));
      add_compressor(b, p + "attn.indexer.compressor", 2 * ci, ci, m, D, layer,
                     [](LayerWeights& lw) -> CompressorWeights& { return lw.indexer->compressor; });
    }
  }

  const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
  b.add(p + "ffn.gate.weight", {E, D}, TensorRole::kFloat, layer, TensorInit::kDense,
        field(&L::gate));
  if (c.is_hash_layer(layer)) {
    b.add(p + "ffn.gate.tid2eid", {c.vocab_size, c.num_experts_per_tok}, TensorRole::kTokenTable,
          layer, TensorInit::kTokenTable, field(&L::tid2eid));
  } else {
    b.add(p + "ffn.gate.bias", {E}, TensorRole::kFloat, layer, TensorInit::kBias,
          field(&L::gate_bias));
  }
  for (int64_t e = 0; e < E; ++e)
    add_expert(b, p + "ffn.experts." + std::to_string(e) + ".", I, D, layer, TensorRole::kExpert,
               TensorInit::kExpert,
               [e](LayerWeights& lw) -> ExpertWeights& { return lw.experts[size_t(e)]; });
  if (c.n_shared_experts > 0)
    add_expert(b, p + "ffn.shared_experts.", I * c.n_shared_experts, D, layer, TensorRole::kLinear,
               TensorInit::kLinear,
               [](LayerWeights& lw) -> ExpertWeights& { return *lw.shared_expert; });
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
  auto model_field = [](auto get) {
    return [get](ModelWeights& w) -> WeightSlot { return get(w); };
  };
  b.add("embed.weight", {c.vocab_size, D}, TensorRole::kFloat, -1, TensorInit::kEmbedding,
        model_field([](ModelWeights& w) { return &w.embed; }));
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) add_layer(b, c, layer);
  b.add("norm.weight", {D}, TensorRole::kFloat, -1, TensorInit::kNearOne,
        model_field([](ModelWeights& w) { return &w.norm; }));
  b.add("hc_head_fn", {n, n * D}, TensorRole::kFloat, -1, TensorInit::kMhcMatrix,
        model_field([](ModelWeights& w) { return &w.hc_head.fn; }));
  b.add("hc_head_base", {n}, TensorRole::kFloat, -1, TensorInit::kMhcBase,
        model_field([](ModelWeights& w) { return &w.hc_head.base; }));
  b.add("hc_head_scale", {1}, TensorRole::kFloat, -1, TensorInit::kOnes,
        model_field([](ModelWeights& w) { return &w.hc_head.scale; }));
  b.add("head.weight", {c.vocab_size, D}, TensorRole::kFloat, -1, TensorInit::kDense,
        model_field([](ModelWeights& w) { return &w.head; }));
  return specs;
}

void prepare_weights(const ModelConfig& c, ModelWeights& w) {
  w.layers.resize(size_t(c.num_hidden_layers));
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    LayerWeights& L = w.layers[size_t(layer)];
    const int64_t m = c.compress_ratio(layer);
    if (m > 0) {
      const bool csa = m == kCsaCompressRatio;
      L.compressor.emplace();
      L.compressor->out_dim = c.head_dim;
      L.compressor->overlap = csa;
      if (csa) {
        L.indexer.emplace();
        L.indexer->compressor.out_dim = c.index_head_dim;
        L.indexer->compressor.overlap = true;
      }
    }
    L.experts.resize(size_t(c.n_routed_experts));
    if (c.n_shared_experts > 0) L.shared_expert.emplace();
  }
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
