// The disk tier of a session's cache: an unnamed scratch file that cache blocks are written to
// (zstd level 1 when that is smaller, with a CRC-32C of the stored bytes) and read back from. The
// file is unlinked at creation, so nothing is left behind whatever happens to the process.
// Thread-safe: blocks are written under a lock at the end of the file and read with pread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace dsv4 {

class SpillFile {
 public:
  // Where one block lies in the file.
  struct Extent {
    uint64_t offset = 0;
    uint32_t stored_bytes = 0;  // in the file
    uint32_t raw_bytes = 0;     // the block itself
    uint32_t crc = 0;           // CRC-32C of the stored bytes
    bool compressed = false;
  };
  // Bytes and blocks that went each way since creation.
  struct Traffic {
    uint64_t blocks_written = 0, raw_bytes_written = 0, file_bytes_written = 0;
    uint64_t blocks_read = 0, raw_bytes_read = 0, file_bytes_read = 0;
  };

  // A new scratch file in `dir` (empty: the system temp directory). Fails with kIo.
  static std::shared_ptr<SpillFile> create(const std::string& dir);
  ~SpillFile();
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Writes n bytes (kIo on failure, e.g. a full disk) and says where they went.
  Extent write(const uint8_t* data, size_t n);
  // Reads a block back into out[extent.raw_bytes]; kCorruptFile if its checksum or size is wrong.
  void read(const Extent& extent, uint8_t* out) const;
  Traffic traffic() const;
  uint64_t file_bytes() const;  // the file's length
  // A clock for least-recently-used order across the stores sharing the file.
  uint64_t now() const noexcept { return clock_.load(std::memory_order_relaxed); }
  void tick() noexcept { clock_.fetch_add(1, std::memory_order_relaxed); }

 private:
  explicit SpillFile(int fd) : fd_(fd) {}
  int fd_ = -1;
  mutable std::mutex write_mutex_;
  uint64_t end_ = 0;
  mutable std::atomic<uint64_t> blocks_written_{0}, raw_written_{0}, file_written_{0};
  mutable std::atomic<uint64_t> blocks_read_{0}, raw_read_{0}, file_read_{0};
  std::atomic<uint64_t> clock_{1};
};

// Fault injection for tests: the next spill write fails with ENOSPC (false disables).
void set_spill_write_failure(bool fail) noexcept;

}  // namespace dsv4
