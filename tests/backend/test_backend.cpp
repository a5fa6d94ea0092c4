// Backend registry and the CPU backend's kernels at every ISA level against the scalar oracle.
#include <catch2/catch.hpp>
#include <random>

#include "../../src/cpu/cpu_kernels.hpp"
#include "dsv4/backend/registry.hpp"

TEST_CASE("registry: cpu is always available; unknown names are rejected", "[backend]") {
  CHECK(dsv4::backend_available("cpu"));
  CHECK_FALSE(dsv4::backend_available("tpu"));
  auto cpu = dsv4::create_backend("cpu");
  REQUIRE(cpu.is_ok());
  CHECK(cpu.value()->name() == "cpu");
  CHECK(cpu.value()->device() == dsv4::DeviceKind::kCpu);
  CHECK(dsv4::create_backend("tpu").status().code() == dsv4::StatusCode::kInvalidArgument);
  auto best = dsv4::create_backend("best");
  REQUIRE(best.is_ok());
  if (!dsv4::backend_available("cuda")) CHECK(best.value()->name() == "cpu");
}

TEST_CASE("registry: an unavailable cuda backend says why", "[backend]") {
  if (dsv4::backend_available("cuda")) return;  // covered by test_cuda_backend on GPU machines
  CHECK_FALSE(dsv4::backend_unavailable_reason("cuda").empty());
  CHECK(dsv4::create_backend("cuda").status().code() == dsv4::StatusCode::kUnsupported);
}

TEST_CASE("cpu backend: buffers are aligned, sized and copy round-trips", "[backend]") {
  auto cpu = dsv4::create_backend("cpu").value();
  auto buffer = cpu->allocate(1000, dsv4::BufferUse::kWeights);
  REQUIRE(buffer.is_ok());
  CHECK(buffer->bytes() == 1000);
  CHECK(reinterpret_cast<uintptr_t>(buffer->data()) % 64 == 0);
  std::vector<uint8_t> src(1000), dst(1000);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(i * 7);
  REQUIRE(cpu->copy_to_device(buffer->data(), src.data(), src.size()).is_ok());
  REQUIRE(cpu->copy_to_host(dst.data(), buffer->data(), dst.size()).is_ok());
  CHECK(src == dst);
  CHECK(cpu->supports({dsv4::OpKind::kGemm, dsv4::WeightFormat::kF32}));
  CHECK_FALSE(cpu->supports({dsv4::OpKind::kGemm, dsv4::WeightFormat::kFp8Block}));
}

TEST_CASE("cpu gemm: every ISA level matches the scalar reference", "[backend][gemm]") {
  using dsv4::cpu::Isa;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const Isa best = dsv4::cpu::detect_isa();
  for (Isa isa : {Isa::kScalar, Isa::kSse2, Isa::kAvx2, Isa::kAvx512}) {
    if (isa > best) {
      WARN("skipped ISA " << dsv4::cpu::isa_name(isa)
                          << ": not supported by this CPU or capped by DSV4_CPU_ISA");
      continue;
    }
    const auto table = dsv4::cpu::kernels_for(isa);
    for (auto [m, n, k] : {std::array<int64_t, 3>{1, 1, 1},
                           {1, 33, 67},
                           {5, 7, 16},
                           {17, 9, 130},
                           {64, 64, 64},
                           {3, 300, 257},
                           {4, 1, 3},
                           {200, 70, 33},
                           {7, 64, 1},
                           {97, 33, 100}}) {
      std::vector<float> a(size_t(m * k)), w(size_t(n * k)), c(size_t(m * n), 0.5f),
          ref(size_t(m * n), 0.5f);
      for (auto& x : a) x = dist(rng);
      for (auto& x : w) x = dist(rng);
      dsv4::GemmArgs g;
      g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = k, g.w = w.data(), g.ldw = k, g.ldc = n;
      g.alpha = 1.5f, g.beta = 0.25f;
      g.c = ref.data();
      dsv4::cpu::gemm_f32_reference(g);
      g.c = c.data();
      table.gemm_f32(g);
      for (size_t i = 0; i < c.size(); ++i) {
        INFO("isa " << dsv4::cpu::isa_name(isa) << " m=" << m << " n=" << n << " k=" << k
                    << " i=" << i);
        REQUIRE(c[i] == Approx(ref[i]).margin(1e-5 * double(k)));
      }
    }
  }
}

TEST_CASE("cpu backend: gemm rejects inconsistent arguments", "[backend][gemm]") {
  auto cpu = dsv4::create_backend("cpu").value();
  dsv4::GemmArgs g;
  g.m = 2, g.n = 2, g.k = 4, g.lda = 2;  // lda < k
  float buf[16] = {};
  g.a = buf, g.w = buf, g.c = buf, g.ldw = 4, g.ldc = 2;
  CHECK(cpu->gemm(g).code() == dsv4::StatusCode::kInvalidArgument);
  g.lda = 4;
  g.w_format = dsv4::WeightFormat::kFp8Block;
  CHECK(cpu->gemm(g).code() == dsv4::StatusCode::kUnsupported);
}
