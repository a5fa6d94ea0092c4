// The CPU backend: aligned host memory and the whole operator table. GEMM and attention are the
// ISA-dispatched kernels of cpu_kernels.hpp; the indexer streams over key blocks with a running
// top-k; the row-wise operators run the reference operators over rows (ops_cpu.cpp).
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu_kernels.hpp"
#include "dsv4/backend/registry.hpp"
#include "indexer_topk.hpp"
#include "official_cpu.hpp"
#include "ops_cpu.hpp"

namespace dsv4::cpu {
namespace {

constexpr size_t kAlignment = 64;  // one cache line, and a full AVX-512 vector

void free_host(void* p, size_t) noexcept { std::free(p); }

Status check_gemm_args(const GemmArgs& g) noexcept {
  const WeightView& w = g.w;
  const bool block_scaled = is_block_scaled(w.format);
  if (g.m < 0 || g.n < 0 || g.k < 0 || !g.a || !w.data || !g.c || g.lda < g.k || g.ldc < g.n ||
      w.out != g.n || w.in != g.k || (block_scaled && !w.scales) ||
      (w.format == WeightFormat::kFp4Block && g.k % 2 != 0) || (w.in_units() && !w.tileable()))
    return Status(StatusCode::kInvalidArgument, "cpu backend: inconsistent gemm arguments");
  return Status::ok();
}

bool has_gemm_kernel(WeightFormat format) noexcept {
  switch (format) {
    case WeightFormat::kF32:
    case WeightFormat::kBF16:
    case WeightFormat::kFp8Block:
    case WeightFormat::kFp4Block:
      return true;
    case WeightFormat::kF16:  // widened to F32 at load; no F16 kernel
      return false;
  }
  return false;
}

// What gemm() accepts: a format with a kernel, consistent shapes, and (official numerics)
// alpha = 1, beta = 0.
Status check_gemm(const GemmArgs& g) noexcept {
  if (!has_gemm_kernel(g.w.format))
    return Status(StatusCode::kUnsupported, "cpu backend: gemm has no kernel for weight format " +
                                                std::string(weight_format_traits(g.w.format).name));
  if (Status s = check_gemm_args(g); !s) return s;
  if (g.numerics != GemmNumerics::kExact && (g.alpha != 1.0f || g.beta != 0.0f))
    return Status(StatusCode::kInvalidArgument,
                  "cpu backend: the official gemm takes alpha = 1 and beta = 0");
  return Status::ok();
}

#if defined(__x86_64__)
// IEEE subnormals for the operators, whatever the calling thread's MXCSR says: a caller built
// with -ffast-math (or one that set flush-to-zero / denormals-are-zero itself) would otherwise
// read the FP8/FP4 block scales below 2^-126 (ue8m0 codes 0) as zero. The caller's state comes
// back after the operator; the OpenMP workers, which inherit it from the thread that created
// them, are cleared once it is seen (they are compute threads).
class SubnormalsScope {
 public:
  static constexpr unsigned kFlushBits = 0x8040;  // FTZ (bit 15) | DAZ (bit 6)
  SubnormalsScope() : saved_(_mm_getcsr()) {
    if (!(saved_ & kFlushBits)) return;
    _mm_setcsr(saved_ & ~kFlushBits);
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() & ~kFlushBits);
  }
  ~SubnormalsScope() {
    if (saved_ & kFlushBits) _mm_setcsr(saved_);
  }
  SubnormalsScope(const SubnormalsScope&) = delete;
  SubnormalsScope& operator=(const SubnormalsScope&) = delete;

 private:
  unsigned saved_;
};
#else
struct SubnormalsScope {};
#endif

// Runs an operator that may allocate scratch; out-of-memory becomes a status.
template <class F>
Status guarded(F&& body) noexcept {
  try {
    const SubnormalsScope subnormals;
    body();
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "cpu backend: out of memory in an operator");
  } catch (...) {
    return Status(StatusCode::kInternal, "cpu backend: unexpected exception in an operator");
  }
}

// Runs the exact or the official variant of a row-wise operator, as the arguments ask.
template <class Args>
Status dispatch(const Args& a, void (*exact)(const Args&), void (*official)(const Args&)) noexcept {
  return guarded([&] { (a.numerics == Numerics::kOfficial ? official : exact)(a); });
}

class CpuBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "cpu"; }
  DeviceKind device() const noexcept override { return DeviceKind::kCpu; }
  bool supports(const OpDesc& op) const noexcept override {
    // Every other operator, any weight format.
    return op.kind != OpKind::kGemm || has_gemm_kernel(op.weight_format);
  }
  // Exact numerics read tiled weights where they stream faster: a GEMV then reads each group of 4
  // rows as one sequence. The decoded formats (FP8, FP4) always (+5% and +12% on 4096×4096
  // GEMVs); F32 and BF16 only in rows shorter than kPlainRowsAsStored bytes: longer plain rows
  // stream faster as four sequences (BF16 in 8 and 16 KiB rows +4-10%, F32 in 4 KiB rows +14%;
  // against 2 KiB rows -5%, 512-byte rows, the head's shape in bench_gemm, -38%;
  // docs/performance.md, seventh round). On Intel's cores FP8 too stays in rows
  // (fp8_rows_as_stored: there the four streams read faster), and FP4 in rows of transposed
  // units (fp4_in_row_units: four streams, and the units its AVX-512 kernel reads). The official
  // kernels read whole rows, so their weights stay in rows.
  static constexpr int64_t kPlainRowsAsStored = 4096;
  WeightLayout gemm_weight_layout(const WeightView& w, Numerics numerics) const noexcept override {
    const bool plain = w.format == WeightFormat::kF32 || w.format == WeightFormat::kBF16;
    const bool units = numerics == Numerics::kExact && has_gemm_kernel(w.format) && w.tileable();
    if (!units || (plain && w.row_bytes() >= kPlainRowsAsStored) ||
        (w.format == WeightFormat::kFp8Block && fp8_rows_as_stored()))
      return WeightLayout::kRows;
    if (w.format == WeightFormat::kFp4Block && fp4_in_row_units()) return WeightLayout::kRowUnits;
    return WeightLayout::kTiled;
  }
  Result<Buffer> allocate(size_t bytes, BufferUse) noexcept override {
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (!p)
      return Status(StatusCode::kOutOfMemory,
                    "cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
    return Buffer(p, bytes, DeviceKind::kCpu, &free_host);
  }
  Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept override {
    if (bytes) std::memcpy(dst, src, bytes);
    return Status::ok();
  }
  Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept override {
    if (bytes) std::memcpy(dst, src, bytes);
    return Status::ok();
  }
  Status gemm(const GemmArgs& g) noexcept override {
    if (Status s = check_gemm(g); !s) return s;
    if (g.m == 0 || g.n == 0) return Status::ok();
    if (g.numerics != GemmNumerics::kExact) return guarded([&] { official::gemm(g); });
    return guarded([&] { kernels().gemm(g); });
  }
  // Exact-numerics groups go to the kernel as one piece of work; the official GEMMs one by one.
  Status gemm_group(const GemmArgs* gemms, int64_t count) noexcept override {
    bool all_exact = true;
    for (int64_t i = 0; i < count; ++i) {
      if (Status s = check_gemm(gemms[i]); !s) return s;
      all_exact = all_exact && gemms[i].numerics == GemmNumerics::kExact;
    }
    if (!all_exact) return Backend::gemm_group(gemms, count);
    return guarded([&] { kernels().gemm_group(gemms, count); });
  }
  Status synchronize() noexcept override { return Status::ok(); }

  Status attention(const AttentionArgs& a) noexcept override {
    if (a.n_heads <= 0 || a.head_dim <= 0 || a.n_keys < 0 || !a.q || !a.out || !a.sinks ||
        (a.n_keys > 0 && !a.keys && !a.key_entries) ||
        (a.key_entries && a.key_codec.dim != a.head_dim))
      return Status(StatusCode::kInvalidArgument, "cpu backend: inconsistent attention arguments");
    if (a.numerics == Numerics::kOfficial) return guarded([&] { official::attention(a); });
    return guarded([&] { kernels().attention(a); });
  }
  Status indexer_topk(const IndexerTopkArgs& a) noexcept override {
    if (a.n_queries < 0 || a.n_heads <= 0 || a.head_dim <= 0 || a.top_k <= 0 ||
        a.block_entries <= 0 || !a.n_visible || !a.selected || !a.n_selected ||
        (a.key_block_entries && a.key_codec.dim != a.head_dim))
      return Status(StatusCode::kInvalidArgument, "cpu backend: inconsistent indexer arguments");
    if (a.numerics == Numerics::kOfficial) return guarded([&] { official::indexer_topk(a); });
    return guarded([&] { cpu::indexer_topk(a); });
  }
  Status embed(const EmbedArgs& a) noexcept override {
    for (int64_t t = 0; t < a.n_tokens; ++t)
      if (a.tokens[t] < 0 || a.tokens[t] >= a.table.out)
        return Status(StatusCode::kOutOfRange, "cpu backend: embedding row out of range");
    return guarded([&] { cpu::embed(a); });
  }
  Status rms_norm(const RmsNormArgs& a) noexcept override {
    return dispatch(a, cpu::rms_norm, official::rms_norm);
  }
  Status rope(const RopeArgs& a) noexcept override {
    return dispatch(a, cpu::rope, official::rope);
  }
  Status compress_pool(const CompressPoolArgs& a) noexcept override {
    return dispatch(a, cpu::compress_pool, official::compress_pool);
  }
  Status mhc_pre(const MhcPreArgs& a) noexcept override {
    if (!supports({OpKind::kGemm, a.fn.format}))
      return Status(StatusCode::kUnsupported, "cpu backend: mHC weights in an unsupported format");
    return dispatch(a, cpu::mhc_pre, official::mhc_pre);
  }
  Status mhc_post(const MhcPostArgs& a) noexcept override {
    return dispatch(a, cpu::mhc_post, official::mhc_post);
  }
  Status mhc_head(const MhcHeadArgs& a) noexcept override {
    if (!supports({OpKind::kGemm, a.fn.format}))
      return Status(StatusCode::kUnsupported, "cpu backend: mHC weights in an unsupported format");
    return dispatch(a, cpu::mhc_head, official::mhc_head);
  }
  Status swiglu(const SwigluArgs& a) noexcept override {
    return dispatch(a, cpu::swiglu, official::swiglu);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dsv4::cpu
