#include "dsv4/model/spill_file.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "dsv4/core/checksum.hpp"
#include "dsv4/core/status.hpp"

namespace dsv4 {
namespace {
std::atomic<bool> g_fail_next_write{false};
constexpr int kZstdLevel = 1;  // the fastest: the tier is on the decode path
}  // namespace

void set_spill_write_failure(bool fail) noexcept { g_fail_next_write = fail; }

std::shared_ptr<SpillFile> SpillFile::create(const std::string& dir) {
  const std::string where = dir.empty() ? std::filesystem::temp_directory_path().string() : dir;
  std::string pattern = where + "/dsv4-spill-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0)
    fail(StatusCode::kIo,
         "cannot create a cache spill file in " + where + ": " + std::strerror(errno));
  ::unlink(pattern.c_str());  // gone with the last descriptor
  return std::shared_ptr<SpillFile>(new SpillFile(fd));
}

SpillFile::~SpillFile() {
  if (fd_ >= 0) ::close(fd_);
}

SpillFile::Extent SpillFile::write(const uint8_t* data, size_t n) {
  // Compress outside the lock; store raw when compression does not pay.
  thread_local std::vector<uint8_t> packed;
  packed.resize(ZSTD_compressBound(n));
  const size_t z = ZSTD_compress(packed.data(), packed.size(), data, n, kZstdLevel);
  Extent e;
  e.raw_bytes = uint32_t(n);
  e.compressed = !ZSTD_isError(z) && z < n;
  const uint8_t* stored = e.compressed ? packed.data() : data;
  e.stored_bytes = uint32_t(e.compressed ? z : n);
  e.crc = crc32c(0, stored, e.stored_bytes);
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (g_fail_next_write.exchange(false)) {
    errno = ENOSPC;
    fail(StatusCode::kIo,
         std::string("cannot write the cache spill file: ") + std::strerror(errno) + " (injected)");
  }
  e.offset = end_;
  for (size_t done = 0; done < e.stored_bytes;) {
    const ssize_t w = ::pwrite(fd_, stored + done, e.stored_bytes - done, off_t(e.offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      fail(StatusCode::kIo,
           std::string("cannot write the cache spill file: ") + std::strerror(errno));
    done += size_t(w);
  }
  end_ += e.stored_bytes;
  ++blocks_written_;
  raw_written_ += n;
  file_written_ += e.stored_bytes;
  return e;
}

void SpillFile::read(const Extent& e, uint8_t* out) const {
  thread_local std::vector<uint8_t> stored;
  stored.resize(e.stored_bytes);
  for (size_t done = 0; done < e.stored_bytes;) {
    const ssize_t r =
        ::pread(fd_, stored.data() + done, e.stored_bytes - done, off_t(e.offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      fail(StatusCode::kIo, std::string("cannot read the cache spill file: ") +
                                (r == 0 ? "unexpected end" : std::strerror(errno)));
    done += size_t(r);
  }
  if (crc32c(0, stored.data(), stored.size()) != e.crc)
    fail(StatusCode::kCorruptFile, "a cache block read back from the spill file is damaged");
  if (e.compressed) {
    const size_t n = ZSTD_decompress(out, e.raw_bytes, stored.data(), stored.size());
    if (ZSTD_isError(n) || n != e.raw_bytes)
      fail(StatusCode::kCorruptFile, "a cache block in the spill file does not decompress");
  } else {
    std::memcpy(out, stored.data(), e.raw_bytes);
  }
  ++blocks_read_;
  raw_read_ += e.raw_bytes;
  file_read_ += e.stored_bytes;
}

SpillFile::Traffic SpillFile::traffic() const {
  Traffic t;
  t.blocks_written = blocks_written_, t.raw_bytes_written = raw_written_;
  t.file_bytes_written = file_written_;
  t.blocks_read = blocks_read_, t.raw_bytes_read = raw_read_, t.file_bytes_read = file_read_;
  return t;
}

uint64_t SpillFile::file_bytes() const {
  std::lock_guard<std::mutex> lock(write_mutex_);
  return end_;
}

}  // namespace dsv4
