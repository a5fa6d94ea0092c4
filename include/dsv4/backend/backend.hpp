// The backend interface: how operators and the model graph reach a device.
//
// Operators and the graph only ever talk to `Backend`; a device (CPU, CUDA, later Ascend) is a
// subclass in src/<device>/ registered in src/backend/registry.cpp. Every method is noexcept and
// reports through Status, so a backend can later be wrapped in a C table for out-of-tree plugins.
// See docs/architecture.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "dsv4/core/format_traits.hpp"
#include "dsv4/core/kv_codec.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/core/weight_view.hpp"

namespace dsv4 {

enum class DeviceKind : uint8_t { kCpu, kCuda, kAscend };
enum class BufferUse : uint8_t { kWeights, kActivations, kKvCache, kWorkspace };

// Device memory owned by a backend, released through the backend's deleter.
class Buffer {
 public:
  using Deleter = void (*)(void* data, size_t bytes) noexcept;
  Buffer() = default;
  Buffer(void* data, size_t bytes, DeviceKind device, Deleter deleter) noexcept
      : data_(data), bytes_(bytes), device_(device), deleter_(deleter) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      device_ = other.device_;
      deleter_ = other.deleter_;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void* data() const noexcept { return data_; }
  size_t bytes() const noexcept { return bytes_; }
  DeviceKind device() const noexcept { return device_; }

 private:
  void reset() noexcept {
    if (data_ && deleter_) deleter_(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
  DeviceKind device_ = DeviceKind::kCpu;
  Deleter deleter_ = nullptr;
};

// The numerics an operator follows (docs/numerics.md). kExact: fp32 on the dequantised weights,
// the default. kOfficial: DeepSeek's own inference numerics point by point
// (../shared/spec/official-numerics.md, the reference operators of dsv4/ops/official_numerics.hpp).
enum class Numerics : uint8_t { kExact, kOfficial };

// How a GEMM rounds. The official code has three kinds of linear layer, told apart by role.
enum class GemmNumerics : uint8_t {
  kExact,           // fp32 accumulation of the dequantised weights
  kOfficialLinear,  // model.py linear(): FP8/FP4 weights -> 1x128 FP8 activation quantisation and
                    // the block-scaled GEMM; other formats -> exact dot products; output in bf16
  kOfficialBf16,    // a bf16 F.linear / einsum: exact dot products of the dequantised weights,
                    // rounded once to fp32, then to bf16 (wo_a, whatever its stored format)
  kOfficialF32,     // an fp32 F.linear: exact dot products rounded once to fp32 (router, head,
                    // compressors)
};

// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C: the shape of every linear layer (weights are
// [out, in] as in the checkpoint, in their stored format). A and C are row-major fp32 with
// leading dimensions in elements; n and k must equal w.out and w.in. The official numerics need
// alpha = 1 and beta = 0.
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  WeightView w;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  GemmNumerics numerics = GemmNumerics::kExact;
};

// ---- the operator table: every operation the model graph performs goes through one of these ----
// Pointers are in the backend's memory (host memory for the CPU backend). Shapes in comments.

// out[t, j, :] = table[tokens[t], :] for j < copies (the mHC streams start as copies).
struct EmbedArgs {
  WeightView table;  // [V, D]
  const int32_t* tokens = nullptr;
  int64_t n_tokens = 0, copies = 1;
  float* out = nullptr;  // [T, copies, D]
};

// y[r] = weight ⊙ x[r] / sqrt(mean(x[r]²) + eps); weight may be null (unweighted). y may be x.
// Official: the fp32 recipe with a bf16 result; unweighted (the per-head query norm) it is the
// official chain of bf16 tensor operations, each rounded to bf16.
struct RmsNormArgs {
  const float* x = nullptr;
  const float* weight = nullptr;  // [n] or null
  float* y = nullptr;
  int64_t rows = 0, n = 0;
  float eps = 0.0f;
  Numerics numerics = Numerics::kExact;
};

// Interleaved RoPE on the last rope_dim values of each of n_heads vectors of head_dim in each row;
// row r is at position first_position + r·position_step; inverse rotates back. Official: the
// angle is fl32(position · θ_i) with θ the fp32 official frequencies (Model::rope_theta), the
// rotation is fp32 and the result is rounded to bf16.
struct RopeArgs {
  float* x = nullptr;  // [rows, row_stride]
  int64_t rows = 0, row_stride = 0, n_heads = 1, head_dim = 0, rope_dim = 0;
  const double* theta = nullptr;  // [rope_dim / 2]
  int64_t first_position = 0, position_step = 1;
  bool inverse = false;
  Numerics numerics = Numerics::kExact;
};

// Sink attention of one query over a set of shared key/value entries (spec section 3):
// out_h = Σ_j softmax({q_h·k_j/sqrt(d)} ∪ {sink_h})_j k_j. Keys are read once for all heads.
// Official: the official sparse-attention kernel (blocks of 64 keys in list order, online
// softmax, bf16 probabilities before PV, bf16 output); a null entry is the official index −1
// (no key, but it occupies its place in the list's blocks).
struct AttentionArgs {
  const float* q = nullptr;  // [H, d]
  int64_t n_heads = 0, head_dim = 0;
  const float* const* keys = nullptr;  // n_keys pointers to [d] entries (key = value)
  // Or: n_keys entries as stored in a cache (key_codec's format: f32, bf16, FP8 nope + bf16
  // rope), read directly by the kernel. Used when not null.
  const uint8_t* const* key_entries = nullptr;
  EntryCodec key_codec;
  int64_t n_keys = 0;
  const float* sinks = nullptr;  // [H]
  float* out = nullptr;          // [H, d]
  Numerics numerics = Numerics::kExact;
};

// Lightning-indexer top-k for nq queries over the first n_visible[t] entries of a block table:
// I_{t,w} = Σ_h u_h · ReLU(q_h · K_w) / sqrt(c); the top_k best (lower index first on ties), in
// ascending index order. Queries with n_visible ≤ top_k select all their entries.
// Official: weights carry both 1/sqrt(c) and 1/sqrt(H_I) (bf16); per-head scores, ReLU·weight
// and the head sum are each rounded to bf16, and the selection comes in the official list order:
// descending score, lower index first among equals.
struct IndexerTopkArgs {
  const float* q = nullptr;        // [nq, H_I, c]
  const float* weights = nullptr;  // [nq, H_I] (u, already divided by sqrt(H_I))
  int64_t n_queries = 0, n_heads = 0, head_dim = 0, top_k = 0;
  const float* const* key_blocks = nullptr;  // blocks of block_entries consecutive [c] keys
  // Or: blocks of block_entries consecutive entries in key_codec's format (used when not null).
  // With a rotating codec the queries must already be rotated alike.
  const uint8_t* const* key_block_entries = nullptr;
  EntryCodec key_codec;
  int64_t block_entries = 0;
  const int64_t* n_visible = nullptr;  // [nq]
  int32_t* selected = nullptr;         // [nq, top_k]: min(n_visible, top_k) ids, ascending
  int64_t* n_selected = nullptr;       // [nq]
  Numerics numerics = Numerics::kExact;
};

// Pooling of one complete compressor window (spec section 3, "Compressors"). HCA (prev_kv null
// and overlap false): out = Σ_s softmax_s(gate_s) ⊙ kv_s over m rows of width out_dim. CSA
// (overlap): 2m slots, the previous window's A halves (absent for the first window: prev null)
// and this window's B halves.
struct CompressPoolArgs {
  const float* kv = nullptr;    // [m, width]
  const float* gate = nullptr;  // [m, width] (ape already added)
  const float* prev_kv_a = nullptr;
  const float* prev_gate_a = nullptr;  // [m, out_dim] (overlap only; null for the first window)
  int64_t m = 0, out_dim = 0;
  bool overlap = false;
  float* out = nullptr;  // [out_dim]
  // Official: softmax and pooled sum in the fp32 recipe, the entry rounded to bf16.
  Numerics numerics = Numerics::kExact;
};

// mHC around a sub-layer (spec section 2) for T tokens of n streams of width D.
// pre: mix = fn·x / rms(x), coefficients (Sinkhorn), y = Σ_j pre_j X_j, and post/comb out.
struct MhcPreArgs {
  const float* x = nullptr;  // [T, n, D]
  int64_t n_tokens = 0, n = 0, d = 0;
  WeightView fn;                 // [(2+n)·n, n·D]
  const float* base = nullptr;   // [(2+n)·n]
  const float* scale = nullptr;  // [3]
  int64_t sinkhorn_iters = 0;
  float hc_eps = 0.0f, norm_eps = 0.0f;
  float* y = nullptr;                    // [T, D]
  float* post = nullptr;                 // [T, n]
  float* comb = nullptr;                 // [T, n, n]
  Numerics numerics = Numerics::kExact;  // official: the Sinkhorn kernel's recipe, y in bf16
};
// post: X'_k = post_k · z + Σ_i comb[i][k] · X_i, in place.
struct MhcPostArgs {
  float* x = nullptr;        // [T, n, D]
  const float* z = nullptr;  // [T, D]
  const float* post = nullptr;
  const float* comb = nullptr;
  int64_t n_tokens = 0, n = 0, d = 0;
  Numerics numerics = Numerics::kExact;  // official: sequential fp32 sums, X' in bf16
};
// head: y = Σ_j (sigmoid(mix_j·scale + base_j) + eps) X_j with mix = fn·x / rms(x).
struct MhcHeadArgs {
  const float* x = nullptr;  // [T, n, D]
  int64_t n_tokens = 0, n = 0, d = 0;
  WeightView fn;  // [n, n·D]
  const float* base = nullptr;
  float scale = 1.0f, hc_eps = 0.0f, norm_eps = 0.0f;
  float* y = nullptr;                    // [T, D]
  Numerics numerics = Numerics::kExact;  // official: separate fp32 ops, y in bf16
};

// out = silu(min(gate, L)) ⊙ clamp(up, −L, L) elementwise (L = 0: no clamp). out may be gate.
struct SwigluArgs {
  const float* gate = nullptr;
  const float* up = nullptr;
  int64_t n = 0;
  float limit = 0.0f;
  float* out = nullptr;
  Numerics numerics = Numerics::kExact;  // official: silu = g / (1 + exp(−g)), each op in fp32
};

enum class OpKind : uint8_t {
  kGemm,
  kEmbed,
  kRmsNorm,
  kRope,
  kAttention,
  kIndexerTopk,
  kCompressPool,
  kMhcPre,
  kMhcPost,
  kMhcHead,
  kSwiglu,
};
inline constexpr int kNumOpKinds = 11;
std::string_view op_kind_name(OpKind kind) noexcept;

// What a caller asks `supports()` about: an operator, and for GEMM and embedding the format of
// the weights it reads.
struct OpDesc {
  OpKind kind = OpKind::kGemm;
  WeightFormat weight_format = WeightFormat::kF32;
  Numerics numerics = Numerics::kExact;
};

// A device: memory plus the operator table. A model asks supports() for every operator it will
// call once, at load; the graph then calls only those. Operators a backend does not implement
// answer kUnsupported (the defaults below).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const noexcept = 0;  // "cpu", "cuda:0"
  virtual DeviceKind device() const noexcept = 0;
  virtual bool supports(const OpDesc& op) const noexcept = 0;
  virtual Result<Buffer> allocate(size_t bytes, BufferUse use) noexcept = 0;
  // Byte copies between host memory and buffers of this backend (host<->device or device<->device).
  virtual Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status synchronize() noexcept = 0;

  // The layout (WeightView::layout) this device's gemm reads the weight `w` fastest in, for a
  // model running in `numerics`. A model puts each GEMM weight in it once, at load
  // (ModelLoadOptions::repack_weights); gemm() must still accept every layout.
  virtual WeightLayout gemm_weight_layout(const WeightView& w, Numerics numerics) const noexcept {
    (void)numerics;
    return w.layout;
  }
  virtual Status gemm(const GemmArgs&) noexcept { return unsupported(OpKind::kGemm); }
  // Several GEMMs at once, independent of one another (no output is another's input or output):
  // an MoE layer's expert projections. A device may run them as one piece of work (the CPU
  // backend: one parallel region over all their weight tiles, instead of one per GEMM); each
  // output is what gemm() alone gives it. By default, gemm() on each in turn.
  virtual Status gemm_group(const GemmArgs* gemms, int64_t count) noexcept {
    for (int64_t i = 0; i < count; ++i)
      if (Status s = gemm(gemms[i]); !s) return s;
    return Status::ok();
  }
  virtual Status embed(const EmbedArgs&) noexcept { return unsupported(OpKind::kEmbed); }
  virtual Status rms_norm(const RmsNormArgs&) noexcept { return unsupported(OpKind::kRmsNorm); }
  virtual Status rope(const RopeArgs&) noexcept { return unsupported(OpKind::kRope); }
  virtual Status attention(const AttentionArgs&) noexcept {
    return unsupported(OpKind::kAttention);
  }
  virtual Status indexer_topk(const IndexerTopkArgs&) noexcept {
    return unsupported(OpKind::kIndexerTopk);
  }
  virtual Status compress_pool(const CompressPoolArgs&) noexcept {
    return unsupported(OpKind::kCompressPool);
  }
  virtual Status mhc_pre(const MhcPreArgs&) noexcept { return unsupported(OpKind::kMhcPre); }
  virtual Status mhc_post(const MhcPostArgs&) noexcept { return unsupported(OpKind::kMhcPost); }
  virtual Status mhc_head(const MhcHeadArgs&) noexcept { return unsupported(OpKind::kMhcHead); }
  virtual Status swiglu(const SwigluArgs&) noexcept { return unsupported(OpKind::kSwiglu); }

 protected:
  Status unsupported(OpKind kind) const {
    return Status(StatusCode::kUnsupported, "backend \"" + std::string(name()) +
                                                "\" does not implement operator " +
                                                std::string(op_kind_name(kind)));
  }
};

}  // namespace dsv4
