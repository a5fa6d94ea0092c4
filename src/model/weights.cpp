#include "dsv4/model/weights.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <variant>

#include "dsv4/core/huge_pages.hpp"
#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4 {
namespace {

std::vector<float> to_float(const ConstTensorView& v) {
  std::vector<float> out(size_t(v.numel()));
  decode_to_float(v, out);
  return out;
}

[[noreturn]] void non_finite(const std::string& tensor, int64_t index, const std::string& what) {
  fail(StatusCode::kCorruptFile, "tensor \"" + tensor + "\": " + what + " at element " +
                                     std::to_string(index) + " (non-finite weights are refused)");
}

// First index among n stored words of type Word for which `bad` holds, or -1. The scan over a
// chunk is branch-free so it vectorises (it reads every weight once at load time); only a chunk
// with a hit is searched again for the index.
template <class Word, class Bad>
int64_t first_bad(const void* data, int64_t n, Bad bad) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  auto word = [&](int64_t i) {
    Word w;
    std::memcpy(&w, bytes + i * int64_t(sizeof(Word)), sizeof(Word));
    return w;
  };
  constexpr int64_t kChunk = 1 << 15;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
    int any = 0;
    for (int64_t i = c0; i < c1; ++i) any |= bad(word(i));
    if (any)
      for (int64_t i = c0; i < c1; ++i)
        if (bad(word(i))) return i;
  }
  return -1;
}

// IEEE-style formats: the exponent bits all ones is NaN or infinity.
template <class Word, uint32_t kExpMask>
int64_t first_nonfinite_ieee(const void* data, int64_t n) {
  return first_bad<Word>(data, n, [](Word w) { return (uint32_t(w) & kExpMask) == kExpMask; });
}

void check_finite(const WeightView& w, const std::string& name) {
  const int64_t n = w.out * w.in;
  int64_t bad = -1;
  switch (w.format) {
    case WeightFormat::kF32:
      bad = first_nonfinite_ieee<uint32_t, 0x7f800000u>(w.data, n);
      break;
    case WeightFormat::kBF16:
      bad = first_nonfinite_ieee<uint16_t, 0x7f80u>(w.data, n);
      break;
    case WeightFormat::kF16:
      bad = first_nonfinite_ieee<uint16_t, 0x7c00u>(w.data, n);
      break;
    case WeightFormat::kFp8Block:  // e4m3fn: 0x7f and 0xff are NaN, there is no infinity
      bad = first_bad<uint8_t>(w.data, n, [](uint8_t c) { return (c & 0x7f) == 0x7f; });
      break;
    case WeightFormat::kFp4Block:
      break;  // every e2m1 code is finite
  }
  if (bad >= 0) non_finite(name + ".weight", bad, "NaN or infinite code");
  if (w.scales) {
    bad =
        first_bad<uint8_t>(w.scales, int64_t(w.scale_bytes()), [](uint8_t c) { return c == 0xff; });
    if (bad >= 0) non_finite(name + ".scale", bad, "ue8m0 NaN code 0xff");
  }
}

void check_finite(const std::vector<float>& v, const std::string& name) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) non_finite(name, int64_t(i), "value " + std::to_string(v[i]));
}

class WeightReader {
 public:
  WeightReader(const Checkpoint& checkpoint, ModelWeights& weights)
      : checkpoint_(checkpoint), weights_(weights) {}

  ConstTensorView view(const std::string& name) const {
    const auto entry = checkpoint_.find(name);
    if (!entry.info)
      fail(StatusCode::kModelMismatch, "tensor \"" + name + "\": missing from the checkpoint");
    return checkpoint_.view(entry);
  }
  std::vector<float> vec(const std::string& name) const {
    std::vector<float> v = to_float(view(name));
    check_finite(v, name);
    return v;
  }

  // A [out, in] matrix viewed in whatever format the checkpoint stores it (PREFIX.weight, and
  // PREFIX.scale for block-scaled formats).
  Linear linear(const std::string& prefix, int64_t out, int64_t in, TensorRole role) {
    auto format = check_tensor(checkpoint_, TensorSpec{prefix, {out, in}, role, -1, {}, {}});
    throw_if_error(format.status());
    return make_linear(prefix, view(prefix + ".weight"), format.value(), out, in);
  }
  // A matrix stored without scales under its full name (BF16 in official checkpoints).
  Linear dense(const std::string& name, int64_t out, int64_t in) {
    auto format =
        check_tensor(checkpoint_, TensorSpec{name, {out, in}, TensorRole::kFloat, -1, {}, {}});
    throw_if_error(format.status());
    const std::string prefix = name.substr(0, name.size() - std::string(".weight").size());
    return make_linear(prefix, view(name), format.value(), out, in);
  }

 private:
  Linear make_linear(const std::string& prefix, const ConstTensorView& w, WeightFormat format,
                     int64_t out, int64_t in) {
    Linear l;
    l.out = out;
    l.in = in;
    l.format = format;
    l.data = w.data;
    if (l.format == WeightFormat::kF16) widen_f16(l, w);
    if (l.format == WeightFormat::kFp8Block || l.format == WeightFormat::kFp4Block) {
      const ConstTensorView scale = view(prefix + ".scale");
      l.scale_cols = scale.shape[1];
      l.scales = scale.dtype == DType::kF8E8M0 ? reinterpret_cast<const uint8_t*>(scale.data)
                                               : ue8m0_from_f32(scale, prefix + ".scale");
    }
    check_finite(l, prefix);
    return l;
  }
  uint8_t* own(size_t bytes) {
    auto buffer = std::shared_ptr<uint8_t[]>(new uint8_t[bytes]);
    uint8_t* p = buffer.get();
    const std::lock_guard<std::mutex> lock(mutex_);
    weights_.buffers.push_back(std::move(buffer));
    return p;
  }
  // F16 has no kernel: widen it to F32 once (F16 matrices do not occur in official checkpoints).
  void widen_f16(Linear& l, const ConstTensorView& w) {
    auto* dst = reinterpret_cast<float*>(own(size_t(w.numel()) * sizeof(float)));
    decode_to_float(w, {dst, size_t(w.numel())});
    l.format = WeightFormat::kF32;
    l.data = dst;
  }
  // F32 block scales are accepted when each is an exact power of two that ue8m0 can hold.
  const uint8_t* ue8m0_from_f32(const ConstTensorView& scale, const std::string& name) {
    uint8_t* dst = own(size_t(scale.numel()));
    for (int64_t i = 0; i < scale.numel(); ++i) {
      const float s = element_as_float(scale, i);
      const uint8_t code = float_to_ue8m0(s);
      if (code == 0xff || ue8m0_to_float(code) != s)
        fail(StatusCode::kUnsupported, "tensor \"" + name + "\": scale " + std::to_string(s) +
                                           " at element " + std::to_string(i) +
                                           " is not a power of two (only ue8m0 block scales are "
                                           "supported)");
      dst[i] = code;
    }
    return dst;
  }
  const Checkpoint& checkpoint_;
  ModelWeights& weights_;
  std::mutex mutex_;
};

// Reads one schema row into its slot.
void load_tensor(WeightReader& r, const TensorSpec& spec, const ModelConfig& c, ModelWeights& w) {
  const WeightSlot slot = spec.slot(w);
  if (auto* matrix = std::get_if<WeightView*>(&slot)) {
    **matrix = spec.role == TensorRole::kFloat
                   ? r.dense(spec.name, spec.shape[0], spec.shape[1])
                   : r.linear(spec.name, spec.shape[0], spec.shape[1], spec.role);
  } else if (auto* values = std::get_if<std::vector<float>*>(&slot)) {
    **values = r.vec(spec.name);
  } else {
    std::vector<int32_t>& table = *std::get<std::vector<int32_t>*>(slot);
    const ConstTensorView t = r.view(spec.name);
    table.resize(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float e = element_as_float(t, i);
      if (!(e >= 0.0f && e < float(c.n_routed_experts)))
        fail(StatusCode::kModelMismatch, "tensor \"" + spec.name + "\": expert id " +
                                             std::to_string(e) + " out of range [0, " +
                                             std::to_string(c.n_routed_experts) + ")");
      table[size_t(i)] = int32_t(e);
    }
  }
}

// The schema's rows grouped by layer: [0] the model-level tensors, [l + 1] layer l's.
std::vector<std::vector<const TensorSpec*>> rows_by_layer(const std::vector<TensorSpec>& specs,
                                                          int64_t n_layers) {
  std::vector<std::vector<const TensorSpec*>> groups(size_t(n_layers + 1));
  for (const TensorSpec& spec : specs) groups[size_t(spec.layer + 1)].push_back(&spec);
  return groups;
}

}  // namespace

Result<ModelWeights> load_weights(std::shared_ptr<const Checkpoint> checkpoint,
                                  const ModelConfig& config, const LoadProgress& progress) {
  return capture_result([&] {
    if (!checkpoint) fail(StatusCode::kInvalidArgument, "load_weights: checkpoint is null");
    ModelWeights w;
    w.checkpoint = checkpoint;
    prepare_weights(config, w);
    WeightReader r(*checkpoint, w);
    const std::vector<TensorSpec> specs = checkpoint_schema(config);
    const auto groups = rows_by_layer(specs, config.num_hidden_layers);
    Status first_error;
    int64_t done = 0;
    // Layers are independent: view and scan them in parallel.
#pragma omp parallel for schedule(dynamic)
    for (size_t g = 0; g < groups.size(); ++g) {
      Status s = capture_status([&] {
        for (const TensorSpec* spec : groups[g]) load_tensor(r, *spec, config, w);
      });
#pragma omp critical
      {
        if (!s && first_error.is_ok()) first_error = s;
        ++done;
        if (progress) (void)capture_status([&] { progress(done, int64_t(groups.size())); });
      }
    }
    throw_if_error(first_error);
    return w;
  });
}

namespace {

// l's codes in `layout`, written to dst (weight_data_bytes(l, layout) bytes).
WeightView relayout(const WeightView& l, WeightLayout layout, uint8_t* dst) {
  return layout == WeightLayout::kRows ? untile_weights(l, dst) : units_weights(l, layout, dst);
}

}  // namespace

void relayout_gemm_weights(ModelWeights& w,
                           const std::function<WeightLayout(const WeightView&)>& layout_for,
                           const std::function<void(int64_t, int64_t)>& progress) {
  std::vector<std::pair<Linear*, WeightLayout>> todo;
  // Every matrix, also those whose layout stays: the copy puts them in huge pages (a mapped
  // checkpoint's 4 KiB pages read about a fifth slower here) and gives the mapping's pages back.
  for_each_gemm_weight(w, [&](Linear& l) {
    const WeightLayout want = layout_for(l);
    if (l.out > 0) {
      if (want != WeightLayout::kRows && (l.first_row != 0 || !l.tileable()))
        fail(StatusCode::kInternal, "relayout_gemm_weights: a matrix that cannot be in units");
      todo.emplace_back(&l, want);
    }
  });
  if (todo.empty() && progress) (void)capture_status([&] { progress(0, 0); });
  std::vector<std::shared_ptr<uint8_t[]>> fresh(todo.size());
  std::vector<const void*> sources(todo.size());
  std::exception_ptr error;
  int64_t done = 0;
  // Matrix by matrix, each thread holding one source and its copy at a time.
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < todo.size(); ++i) {
    try {
      Linear& l = *todo[i].first;
      // Cache-line aligned (a tiled matrix's 64-byte units each fill one line); a matrix of 2 MiB
      // or more in huge pages: its first touch faults 512 times less often (7.4 GB of the
      // V4-Flash slice took 10 s to copy in 4 KiB pages) and decode streams it with fewer TLB
      // misses.
      fresh[i] = huge_page_bytes(weight_data_bytes(l, todo[i].second));
      const Linear before = l;
      l = relayout(before, todo[i].second, fresh[i].get());
      sources[i] = before.data;
      if (w.checkpoint) w.checkpoint->release_pages(before.data, before.data_bytes());
      if (progress) {
#pragma omp critical(dsv4_relayout_progress)
        (void)capture_status([&] { progress(++done, int64_t(todo.size())); });
      }
    } catch (...) {
#pragma omp critical(dsv4_relayout_error)
      if (!error) error = std::current_exception();
    }
  }
  for (auto& b : fresh)
    if (b) w.buffers.push_back(std::move(b));
  if (error) std::rethrow_exception(error);
  // A source that was a buffer of the weights' own (generated or widened matrices, one buffer
  // each) is released unless a view still points at it.
  std::vector<const void*> in_use;
  auto note = [&](const WeightView& v) { in_use.insert(in_use.end(), {v.data, v.scales}); };
  for_each_gemm_weight(w, note);
  note(w.embed);
  std::sort(sources.begin(), sources.end());
  std::sort(in_use.begin(), in_use.end());
  std::erase_if(w.buffers, [&](const std::shared_ptr<uint8_t[]>& b) {
    const void* p = b.get();
    return std::binary_search(sources.begin(), sources.end(), p) &&
           !std::binary_search(in_use.begin(), in_use.end(), p);
  });
}

namespace {

size_t vector_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }
size_t mhc_bytes(const MhcWeights& m) {
  return vector_bytes(m.fn) + vector_bytes(m.base) + vector_bytes(m.scale);
}
size_t compressor_bytes(const CompressorWeights& c) {
  return c.wkv.bytes() + c.wgate.bytes() + vector_bytes(c.ape) + vector_bytes(c.norm);
}
size_t expert_bytes(const ExpertWeights& e) { return e.w1.bytes() + e.w2.bytes() + e.w3.bytes(); }

}  // namespace

size_t ModelWeights::resident_bytes() const noexcept {
  size_t total = embed.bytes() + head.bytes() + vector_bytes(norm) + mhc_bytes(hc_head);
  for (const LayerWeights& L : layers) {
    total += vector_bytes(L.attn_norm) + vector_bytes(L.ffn_norm) + mhc_bytes(L.hc_attn) +
             mhc_bytes(L.hc_ffn);
    for (const Linear* l : {&L.wq_a, &L.wq_b, &L.wkv, &L.wo_a, &L.wo_b, &L.gate})
      total += l->bytes();
    total += vector_bytes(L.q_norm) + vector_bytes(L.kv_norm) + vector_bytes(L.attn_sink) +
             vector_bytes(L.gate_bias) + L.tid2eid.size() * sizeof(int32_t);
    if (L.compressor) total += compressor_bytes(*L.compressor);
    if (L.indexer)
      total += L.indexer->wq_b.bytes() + L.indexer->weights_proj.bytes() +
               compressor_bytes(L.indexer->compressor);
    for (const ExpertWeights& e : L.experts) total += expert_bytes(e);
    if (L.shared_expert) total += expert_bytes(*L.shared_expert);
  }
  return total;
}

size_t estimate_resident_bytes(const Checkpoint& checkpoint, const ModelConfig& config) {
  // The table says where each tensor lands: a matrix view stays as stored (F16 is widened to
  // F32), a vector becomes an fp32 copy. A shaped-but-empty ModelWeights gives the slots.
  ModelWeights shape_only;
  prepare_weights(config, shape_only);
  size_t total = 0;
  for (const TensorSpec& spec : checkpoint_schema(config)) {
    const auto entry = checkpoint.find(stored_weight_name(spec));
    if (!entry.info) continue;  // the schema check reports it
    const size_t stored = size_t(entry.info->end - entry.info->begin);
    if (std::holds_alternative<WeightView*>(spec.slot(shape_only))) {
      total += entry.info->dtype == DType::kF16 ? stored * 2 : stored;
      const auto scale = checkpoint.find(spec.name + ".scale");
      if (scale.info) total += size_t(scale.info->end - scale.info->begin);
    } else {
      total += size_t(shape_numel(spec.shape)) * 4;
    }
  }
  return total;
}

// ---- random weights ----
namespace {

// A fast counter-based generator: random weights for a 13B-parameter benchmark slice must not
// take minutes. Irwin-Hall with four uniforms approximates a normal distribution well enough.
class FastRandom {
 public:
  explicit FastRandom(uint64_t seed)
      : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float normal() {
    const uint64_t a = next(), b = next();
    const float sum =
        float(a & 0xffffffffu) + float(a >> 32) + float(b & 0xffffffffu) + float(b >> 32);
    return (sum * (1.0f / 4294967296.0f) - 2.0f) * 1.7320508f;  // variance 1
  }

 private:
  uint64_t state_;
};

// Codes of a normal distribution N(0, sigma²) in a format, by table: entry i is the code of the
// (i + 1/2)/4096 quantile, so 12 random bits draw one code. Random weights of a 13B-parameter
// benchmark slice then take seconds, not minutes.
class QuantileCodes {
 public:
  QuantileCodes(float sigma, uint8_t (*encode)(float)) {
    const auto& z = standard_normal_quantiles();
    for (int i = 0; i < kSize; ++i) codes_[size_t(i)] = encode(z[size_t(i)] * sigma);
  }
  uint8_t operator()(uint64_t bits) const { return codes_[size_t(bits & (kSize - 1))]; }
  static constexpr int kSize = 4096;

 private:
  // Φ⁻¹((i + 1/2)/kSize), computed once by bisection on Φ(x) = erfc(−x/√2)/2.
  static const std::array<float, kSize>& standard_normal_quantiles() {
    static const std::array<float, kSize> table = [] {
      std::array<float, kSize> z{};
      for (int i = 0; i < kSize; ++i) {
        const double p = (i + 0.5) / kSize;
        double lo = -10.0, hi = 10.0;
        for (int it = 0; it < 60; ++it) {
          const double mid = 0.5 * (lo + hi);
          (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
        }
        z[size_t(i)] = float(0.5 * (lo + hi));
      }
      return z;
    }();
    return table;
  }
  std::array<uint8_t, kSize> codes_{};
};

class RandomFill {
 public:
  RandomFill(uint64_t seed, ModelWeights& owner, const RandomWeightFormats& formats)
      : rng_(seed), owner_(owner), formats_(formats) {}
  std::vector<float> normal(int64_t n, float stddev) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = rng_.normal() * stddev;
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
  Linear linear(int64_t out, int64_t in) { return matrix(out, in, formats_.linear, 1.0f); }
  Linear expert(int64_t out, int64_t in) { return matrix(out, in, formats_.expert, 1.0f); }
  Linear dense(int64_t out, int64_t in, float gain = 1.0f) {
    return matrix(out, in, formats_.dense, gain);
  }

 private:
  Linear matrix(int64_t out, int64_t in, WeightFormat format, float gain) {
    if (format == WeightFormat::kFp4Block && in % 2 != 0) format = WeightFormat::kF32;
    const float stddev = gain / std::sqrt(float(in));
    Linear l;
    l.format = format;
    l.out = out;
    l.in = in;
    uint8_t* data = own(size_t(out * l.row_bytes()));
    l.data = data;
    switch (format) {
      case WeightFormat::kBF16:
        for (int64_t i = 0; i < out * in; ++i) {
          const uint16_t b = float_to_bf16(rng_.normal() * stddev);
          std::memcpy(data + 2 * i, &b, 2);
        }
        break;
      case WeightFormat::kFp8Block:
      case WeightFormat::kFp4Block: {
        const bool fp8 = format == WeightFormat::kFp8Block;
        // One power-of-two scale for every block: 4 sigma maps near the format's maximum.
        const float max_code = fp8 ? kFp8E4M3Max : kFp4E2M1Max;
        const uint8_t scale_code = float_to_ue8m0(4.0f * stddev / max_code);
        const float inv_scale = 1.0f / ue8m0_to_float(scale_code);
        l.scale_cols = fp8 ? (in + 127) / 128 : (in + 31) / 32;
        const size_t n_scales = size_t(l.scale_rows() * l.scale_cols);
        uint8_t* scales = own(n_scales);
        std::memset(scales, scale_code, n_scales);
        l.scales = scales;
        const QuantileCodes codes(stddev * inv_scale,
                                  fp8 ? &float_to_fp8_e4m3 : &float_to_fp4_e2m1);
        const int64_t n_bytes = fp8 ? out * in : out * in / 2;
        for (int64_t i = 0; i < n_bytes; ++i) {
          const uint64_t r = rng_.next();
          data[i] = fp8 ? codes(r) : uint8_t(codes(r) | codes(r >> 12) << 4);
        }
        break;
      }
      default:
        l.format = WeightFormat::kF32;
        for (int64_t i = 0; i < out * in; ++i) {
          const float v = rng_.normal() * stddev;
          std::memcpy(data + 4 * i, &v, 4);
        }
        break;
    }
    return l;
  }
  uint8_t* own(size_t bytes) {
    auto buffer = std::shared_ptr<uint8_t[]>(new uint8_t[bytes]);
    uint8_t* p = buffer.get();
#pragma omp critical(dsv4_random_weights_own)
    owner_.buffers.push_back(std::move(buffer));
    return p;
  }

  FastRandom rng_;
  ModelWeights& owner_;
  RandomWeightFormats formats_;
};

// Makes up one schema row in its slot, as its TensorInit says.
void random_tensor(RandomFill& f, const TensorSpec& spec, const ModelConfig& c, ModelWeights& w) {
  const WeightSlot slot = spec.slot(w);
  const int64_t n = shape_numel(spec.shape);
  if (auto* matrix = std::get_if<WeightView*>(&slot)) {
    const int64_t out = spec.shape[0], in = spec.shape[1];
    switch (spec.init) {
      case TensorInit::kExpert:
        **matrix = f.expert(out, in);
        break;
      case TensorInit::kDense:
        **matrix = f.dense(out, in);
        break;
      case TensorInit::kEmbedding:
        **matrix = f.dense(out, in, std::sqrt(float(in)));  // unit-variance rows
        break;
      default:
        **matrix = f.linear(out, in);
        break;
    }
  } else if (auto* values = std::get_if<std::vector<float>*>(&slot)) {
    switch (spec.init) {
      case TensorInit::kNearOne:
        **values = f.around_one(n);
        break;
      case TensorInit::kMhcMatrix:
        **values = f.normal(n, 0.02f);
        break;
      case TensorInit::kMhcBase:
        **values = f.normal(n, 0.5f);
        break;
      case TensorInit::kOnes:
        **values = f.constant(n, 1.0f);
        break;
      case TensorInit::kApe:
      case TensorInit::kBias:
        **values = f.normal(n, 0.1f);
        break;
      default:
        **values = f.normal(n, 1.0f);
        break;
    }
  } else {
    std::vector<int32_t>& table = *std::get<std::vector<int32_t>*>(slot);
    const int64_t k = c.num_experts_per_tok, E = c.n_routed_experts;
    table.resize(size_t(c.vocab_size * k));
    for (int64_t t = 0; t < c.vocab_size; ++t)
      for (int64_t j = 0; j < k; ++j) table[size_t(t * k + j)] = int32_t((t * 7 + j * (E / k)) % E);
  }
}

}  // namespace

ModelWeights random_weights(const ModelConfig& c, uint64_t seed,
                            const RandomWeightFormats& formats) {
  ModelWeights w;
  prepare_weights(c, w);
  const std::vector<TensorSpec> specs = checkpoint_schema(c);
  const auto groups = rows_by_layer(specs, c.num_hidden_layers);
  // Each group (the model-level tensors, each layer) has its own generator, so layers fill in
  // parallel and stay reproducible.
  std::exception_ptr failed;  // nothing may leave the parallel region (std::bad_alloc included)
#pragma omp parallel for schedule(dynamic)
  for (size_t g = 0; g < groups.size(); ++g) {
    try {
      RandomFill fill(g == 0 ? seed : seed ^ (uint64_t(g) << 40), w, formats);
      for (const TensorSpec* spec : groups[g]) random_tensor(fill, *spec, c, w);
    } catch (...) {
#pragma omp critical(dsv4_random_weights_error)
      if (!failed) failed = std::current_exception();
    }
  }
  if (failed) std::rethrow_exception(failed);
  return w;
}

// ---- writing a checkpoint ----
namespace {

class CheckpointWriter {
 public:
  void vec(const std::string& name, const std::vector<float>& v, Shape shape) {
    items_.push_back({name, DType::kF32, std::move(shape), bytes_of(v.data(), v.size() * 4)});
  }
  void vec(const std::string& name, const std::vector<float>& v) {
    vec(name, v, {int64_t(v.size())});
  }
  // A matrix named PREFIX.weight (+ PREFIX.scale when block-scaled).
  void matrix(const std::string& prefix, const Linear& l) {
    if (l.first_row != 0) fail(StatusCode::kInternal, "write_checkpoint: a row view of " + prefix);
    const auto data = l.in_units() ? rows_in_order(l) : bytes_of(l.data, l.data_bytes());
    switch (l.format) {
      case WeightFormat::kF32:
        items_.push_back({prefix + ".weight", DType::kF32, {l.out, l.in}, data});
        return;
      case WeightFormat::kBF16:
        items_.push_back({prefix + ".weight", DType::kBF16, {l.out, l.in}, data});
        return;
      case WeightFormat::kF16:
        items_.push_back({prefix + ".weight", DType::kF16, {l.out, l.in}, data});
        return;
      case WeightFormat::kFp8Block:
        items_.push_back({prefix + ".weight", DType::kF8E4M3, {l.out, l.in}, data});
        break;
      case WeightFormat::kFp4Block:
        items_.push_back({prefix + ".weight", DType::kI8, {l.out, l.in / 2}, data});
        break;
    }
    items_.push_back({prefix + ".scale",
                      DType::kF8E8M0,
                      {l.scale_rows(), l.scale_cols},
                      bytes_of(l.scales, l.scale_bytes())});
  }
  void mhc(const std::string& prefix, const MhcWeights& m, Shape fn_shape) {
    vec(prefix + "_fn", m.fn, std::move(fn_shape));
    vec(prefix + "_base", m.base);
    vec(prefix + "_scale", m.scale);
  }
  void compressor(const std::string& prefix, const CompressorWeights& c) {
    matrix(prefix + ".wkv", c.wkv);
    matrix(prefix + ".wgate", c.wgate);
    vec(prefix + ".ape", c.ape, {int64_t(c.ape.size()) / c.wkv.out, c.wkv.out});
    vec(prefix + ".norm.weight", c.norm);
  }
  void table(const std::string& name, const std::vector<int32_t>& t, Shape shape) {
    items_.push_back({name, DType::kI32, std::move(shape), bytes_of(t.data(), t.size() * 4)});
  }
  const std::vector<SafetensorsWriteItem>& items() const { return items_; }

 private:
  static std::span<const std::byte> bytes_of(const void* p, size_t n) {
    return {static_cast<const std::byte*>(p), n};
  }
  // A tiled matrix's codes back in the checkpoint's row order (kept until the file is written).
  std::span<const std::byte> rows_in_order(const Linear& l) {
    auto& codes = untiled_.emplace_back(size_t(l.out * l.row_bytes()));
    untile_weights(l, codes.data());
    return bytes_of(codes.data(), codes.size());
  }
  std::vector<SafetensorsWriteItem> items_;
  std::deque<std::vector<uint8_t>> untiled_;  // a deque: spans into earlier ones stay valid
};

}  // namespace

Status write_checkpoint(const std::string& dir, const ModelConfig& c, const ModelWeights& w) {
  return capture_status([&] {
    CheckpointWriter out;
    const int64_t n = c.hc_mult, D = c.hidden_size;
    out.matrix("embed", w.embed);
    for (size_t i = 0; i < w.layers.size(); ++i) {
      const LayerWeights& L = w.layers[i];
      const std::string p = "layers." + std::to_string(i) + ".";
      out.vec(p + "attn_norm.weight", L.attn_norm);
      out.vec(p + "ffn_norm.weight", L.ffn_norm);
      out.mhc(p + "hc_attn", L.hc_attn, {(2 + n) * n, n * D});
      out.mhc(p + "hc_ffn", L.hc_ffn, {(2 + n) * n, n * D});
      out.matrix(p + "attn.wq_a", L.wq_a);
      out.vec(p + "attn.q_norm.weight", L.q_norm);
      out.matrix(p + "attn.wq_b", L.wq_b);
      out.matrix(p + "attn.wkv", L.wkv);
      out.vec(p + "attn.kv_norm.weight", L.kv_norm);
      out.matrix(p + "attn.wo_a", L.wo_a);
      out.matrix(p + "attn.wo_b", L.wo_b);
      out.vec(p + "attn.attn_sink", L.attn_sink);
      if (L.compressor) out.compressor(p + "attn.compressor", *L.compressor);
      if (L.indexer) {
        out.matrix(p + "attn.indexer.wq_b", L.indexer->wq_b);
        out.matrix(p + "attn.indexer.weights_proj", L.indexer->weights_proj);
        out.compressor(p + "attn.indexer.compressor", L.indexer->compressor);
      }
      out.matrix(p + "ffn.gate", L.gate);
      if (!L.tid2eid.empty())
        out.table(p + "ffn.gate.tid2eid", L.tid2eid, {c.vocab_size, c.num_experts_per_tok});
      else
        out.vec(p + "ffn.gate.bias", L.gate_bias);
      for (size_t e = 0; e < L.experts.size(); ++e)
        for (const auto& [name, l] : {std::pair{"w1", &L.experts[e].w1},
                                      {"w2", &L.experts[e].w2},
                                      {"w3", &L.experts[e].w3}})
          out.matrix(p + "ffn.experts." + std::to_string(e) + "." + name, *l);
      if (L.shared_expert)
        for (const auto& [name, l] : {std::pair{"w1", &L.shared_expert->w1},
                                      {"w2", &L.shared_expert->w2},
                                      {"w3", &L.shared_expert->w3}})
          out.matrix(p + "ffn.shared_experts." + name, *l);
    }
    out.vec("norm.weight", w.norm);
    out.mhc("hc_head", w.hc_head, {n, n * D});
    out.matrix("head", w.head);
    std::filesystem::create_directories(dir);
    throw_if_error(write_safetensors(dir + "/model.safetensors", out.items()));
    std::ofstream config(dir + "/config.json", std::ios::binary | std::ios::trunc);
    config << model_config_to_json(c) << "\n";
    if (!config.flush()) fail(StatusCode::kIo, "cannot write " + dir + "/config.json");
  });
}

}  // namespace dsv4
