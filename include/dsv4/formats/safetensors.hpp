// Safetensors checkpoints over mmap: single files and sharded checkpoints
// (model.safetensors.index.json), with zero-copy tensor views.
//
// File layout: u64 little-endian header length N, N bytes of JSON, then the data section.
// The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the data section) plus an optional "__metadata__" string map. Everything is validated before
// any view is handed out: header size limits, JSON syntax and nesting, known dtypes, non-negative
// integer shapes, offsets inside the data section and not overlapping, and shape x dtype equal to
// the byte range. A failure names the file and tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/core/tensor_view.hpp"

namespace dsv4 {

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;  // as the reference reader

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;                   // N
  uint64_t data_offset = 0;                    // 8 + N
  std::vector<SafetensorsTensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
};

// Validates the header of a complete in-memory safetensors file (the fuzz entry point).
// `source` names the file in messages.
Result<SafetensorsHeader> parse_safetensors_header(std::span<const std::byte> file,
                                                   std::string_view source = "<memory>");

// A tensor to write: `bytes` must hold shape × dtype bytes.
struct SafetensorsWriteItem {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::span<const std::byte> bytes;
};

// Writes a safetensors file (header padded to 8 bytes, tensors in the given order). Written to a
// temporary name first and renamed, so a failure never leaves a truncated file behind.
Status write_safetensors(const std::string& path, const std::vector<SafetensorsWriteItem>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// A read-only memory map of a whole file.
class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::string& path() const noexcept { return path_; }
  // Drops the whole pages inside [p, p + n) from the process's resident set, if the range lies in
  // this mapping (returns whether it does). The content is unchanged: a later read faults the
  // pages back in from the file. For a tensor copied elsewhere at load (repacked weights).
  bool release_pages(const void* p, size_t n) const noexcept;

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// One safetensors file: its validated header and its mapping.
class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);

  const SafetensorsHeader& header() const noexcept { return header_; }
  const std::string& path() const noexcept { return file_->path(); }
  const SafetensorsTensorInfo* find(std::string_view name) const noexcept;
  ConstTensorView view(const SafetensorsTensorInfo& info) const noexcept;
  const MappedFile& mapping() const noexcept { return *file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

// A checkpoint directory: `model.safetensors.index.json` + shards, or `model.safetensors`,
// or a path to a single .safetensors file.
class Checkpoint {
 public:
  static Result<Checkpoint> open(const std::string& path);

  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensorInfo* info;
  };
  // nullptr-file entry when absent.
  Entry find(std::string_view name) const noexcept;
  bool contains(std::string_view name) const noexcept { return find(name).info != nullptr; }
  ConstTensorView view(const Entry& entry) const noexcept { return entry.file->view(*entry.info); }
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  size_t n_tensors() const noexcept { return index_.size(); }
  size_t n_files() const noexcept { return files_.size(); }
  // MappedFile::release_pages on the file whose mapping holds [p, p + n); false if none does.
  bool release_pages(const void* p, size_t n) const noexcept;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> index_;
};

}  // namespace dsv4
