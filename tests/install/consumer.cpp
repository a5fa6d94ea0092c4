#include <cstdio>
#include <dsv4/backend/registry.hpp>
#include <dsv4/core/dtype.hpp>
int main() {
  if (dsv4::fp8_e4m3_to_float(0x7e) != 448.0f) return 1;
  auto cpu = dsv4::create_backend("cpu");
  if (!cpu) return 1;
  std::printf("consumer_cpp: backend %s\n", std::string(cpu.value()->name()).c_str());
  return 0;
}
