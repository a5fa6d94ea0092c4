// Grouped low-rank output projection (spec section 3): the H heads split into G groups of H/G
// consecutive heads; group g's concatenation (H·d/G values) goes through rows [g·R, (g+1)·R) of
// wo_a. The G·R results are concatenated (wo_b follows as a plain linear).
#pragma once

#include <cstdint>

#include "dsv4/backend/backend.hpp"

namespace dsv4::ops {

// o: [T, G·group_in] (heads concatenated); wo_a: [G·R, group_in] in any weight format;
// out: [T, G·R].
inline Status grouped_output_projection(Backend& backend, const float* o, int64_t n_tokens,
                                        int64_t n_groups, int64_t group_in, const WeightView& wo_a,
                                        int64_t rank, float* out,
                                        GemmNumerics numerics = GemmNumerics::kExact) {
  for (int64_t g = 0; g < n_groups; ++g) {
    GemmArgs args;
    args.m = n_tokens, args.n = rank, args.k = group_in;
    args.a = o + g * group_in, args.lda = n_groups * group_in;
    args.w = weight_rows(wo_a, g * rank, rank);
    args.c = out + g * rank, args.ldc = n_groups * rank;
    args.numerics = numerics;
    if (Status s = backend.gemm(args); !s) return s;
  }
  return Status::ok();
}

}  // namespace dsv4::ops
