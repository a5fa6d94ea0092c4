// Process memory as the kernel sees it (Linux /proc), for the CLI's "peak working memory" and the
// benchmarks: the resident set, and its high-water mark during a run less what was resident
// before it (weights and caller buffers) and less the cache the run left behind.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>

namespace dsv4::bench {

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); 0 when unavailable.
inline size_t proc_status_bytes(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  const size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') {
      std::sscanf(line + n + 1, "%zu", &kib);
      break;
    }
  std::fclose(f);
  return kib * 1024;
}

// Starts a new peak: the kernel resets VmHWM to the current RSS on "5" to clear_refs.
inline void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

class WorkingMemoryProbe {
 public:
  WorkingMemoryProbe() {
    reset_peak_rss();
    baseline_ = proc_status_bytes("VmRSS");
  }
  // Peak bytes beyond the baseline, less `kept` (the cache the run leaves resident).
  size_t peak_working(size_t kept) const {
    const size_t peak = proc_status_bytes("VmHWM");
    const size_t grown = peak > baseline_ ? peak - baseline_ : 0;
    return grown > kept ? grown - kept : 0;
  }

 private:
  size_t baseline_ = 0;
};

}  // namespace dsv4::bench
