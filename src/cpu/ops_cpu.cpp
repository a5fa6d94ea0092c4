// The CPU backend's small operators: embedding rows, RMSNorm, RoPE, compressor pooling, mHC and
// SwiGLU. They run the operator headers of include/dsv4/ops/ (the references) over rows, in
// parallel when there are enough rows to pay for it; GEMM and attention are the ISA-dispatched
// kernels of cpu_kernels.hpp.
#include "ops_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_kernels.hpp"
#include "dsv4/ops/compressor.hpp"
#include "dsv4/ops/hyper_connection.hpp"
#include "dsv4/ops/moe.hpp"
#include "dsv4/ops/rms_norm.hpp"
#include "dsv4/ops/rope.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu {
namespace {
// Rows below which a row-wise operator stays on the calling thread.
constexpr int64_t kParallelRows = 16;

// mix[T, rows] = (fn · x_t) / rms(x_t) for the flattened streams x_t [n·D].
void mhc_mix(const WeightView& fn, const float* x, int64_t n_tokens, int64_t width, float eps,
             float* mix) {
  GemmArgs g;
  g.m = n_tokens, g.n = fn.out, g.k = width;
  g.a = x, g.lda = width, g.w = fn, g.c = mix, g.ldc = fn.out;
  kernels().gemm(g);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float inv = float(ops::inverse_rms(x + t * width, width, eps));
    for (int64_t i = 0; i < fn.out; ++i) mix[t * fn.out + i] *= inv;
  }
}
}  // namespace

void embed(const EmbedArgs& a) {
  const int64_t D = a.table.in;
#pragma omp parallel for schedule(static) if (a.n_tokens > kParallelRows)
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    float* row = a.out + t * a.copies * D;
    a.table.decode_row(a.tokens[t], row);
    for (int64_t j = 1; j < a.copies; ++j) std::copy_n(row, D, row + j * D);
  }
}

void rms_norm(const RmsNormArgs& a) {
#pragma omp parallel for schedule(static) if (a.rows > kParallelRows)
  for (int64_t r = 0; r < a.rows; ++r)
    ops::rms_norm(a.x + r * a.n, a.weight, a.y + r * a.n, a.n, a.eps);
}

void rope(const RopeArgs& a) {
  const int64_t half = a.rope_dim / 2;
  ParallelGuard guard;
#pragma omp parallel for schedule(static) if (a.rows > kParallelRows)
  for (int64_t r = 0; r < a.rows; ++r)
    guard.run([&] {
      thread_local std::vector<float> cos_sin;
      cos_sin.resize(size_t(2 * half));
      float *cos_a = cos_sin.data(), *sin_a = cos_sin.data() + half;
      ops::rope_cos_sin(a.theta, half, a.first_position + r * a.position_step, cos_a, sin_a);
      float* row = a.x + r * a.row_stride;
      for (int64_t h = 0; h < a.n_heads; ++h)
        ops::rope_rotate(row + h * a.head_dim + a.head_dim - a.rope_dim, half, cos_a, sin_a,
                         a.inverse);
    });
  guard.rethrow();
}

void compress_pool(const CompressPoolArgs& a) {
  if (a.overlap) {
    ops::csa_pool(a.prev_kv_a, a.prev_gate_a, a.kv, a.gate, a.m, a.out_dim, a.out);
  } else {
    ops::hca_pool(a.kv, a.gate, a.m, a.out_dim, a.out);
  }
}

void mhc_pre(const MhcPreArgs& a) {
  const int64_t n = a.n, D = a.d, rows = a.fn.out;
  thread_local std::vector<float> mix_buffer;  // grows once per shape: no allocation per token
  mix_buffer.resize(size_t(a.n_tokens * rows));
  // A plain pointer: inside the parallel region a thread_local name means the worker's own.
  float* mix = mix_buffer.data();
  mhc_mix(a.fn, a.x, a.n_tokens, n * D, a.norm_eps, mix);
#pragma omp parallel for schedule(static) if (a.n_tokens > kParallelRows)
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    float pre[64];  // hc_mult ≤ 64 is checked by the config
    ops::mhc_coefficients(mix + t * rows, a.base, a.scale, n, a.sinkhorn_iters, a.hc_eps, pre,
                          a.post + t * n, a.comb + t * n * n);
    ops::mhc_collapse(a.x + t * n * D, pre, n, D, a.y + t * D);
  }
}

void mhc_post(const MhcPostArgs& a) {
  ParallelGuard guard;
#pragma omp parallel for schedule(static) if (a.n_tokens > kParallelRows)
  for (int64_t t = 0; t < a.n_tokens; ++t)
    guard.run([&] {
      thread_local std::vector<float> scratch;
      scratch.resize(size_t(a.n * a.d));
      ops::mhc_update(a.x + t * a.n * a.d, a.z + t * a.d, a.post + t * a.n, a.comb + t * a.n * a.n,
                      a.n, a.d, scratch.data());
    });
  guard.rethrow();
}

void mhc_head(const MhcHeadArgs& a) {
  const int64_t n = a.n, D = a.d;
  thread_local std::vector<float> mix;
  mix.resize(size_t(a.n_tokens * n));
  mhc_mix(a.fn, a.x, a.n_tokens, n * D, a.norm_eps, mix.data());
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    float pre[64];
    ops::mhc_head_weights(mix.data() + t * n, a.base, a.scale, n, a.hc_eps, pre);
    ops::mhc_collapse(a.x + t * n * D, pre, n, D, a.y + t * D);
  }
}

void swiglu(const SwigluArgs& a) { ops::swiglu_clamped(a.gate, a.up, a.n, a.limit, a.out); }

}  // namespace dsv4::cpu
