#include "dsv4/formats/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace dsv4 {
namespace {

using nlohmann::json;

// Deep nesting is the classic way to exhaust a recursive parser's stack; no valid header or
// index needs more than three levels.
constexpr int kMaxJsonDepth = 8;
constexpr int64_t kMaxDim = int64_t(1) << 48;
constexpr size_t kMaxIndexBytes = 64u << 20;

[[noreturn]] void corrupt(std::string_view source, const std::string& what) {
  fail(StatusCode::kCorruptFile, std::string(source) + ": " + what);
}

// Parses JSON text with a nesting limit and rejects duplicate keys at the top level
// (nlohmann would silently keep the last one).
json parse_json_strict(std::string_view text, std::string_view source) {
  std::set<std::string> top_keys;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth)
      corrupt(source, "JSON nested deeper than " + std::to_string(kMaxJsonDepth));
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!top_keys.insert(parsed.get<std::string>()).second)
        corrupt(source, "duplicate key \"" + parsed.get<std::string>() + "\"");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    corrupt(source, std::string("invalid JSON: ") + e.what());
  }
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

SafetensorsTensorInfo parse_tensor_entry(const std::string& name, const json& entry,
                                         uint64_t data_size, std::string_view source) {
  const std::string where = "tensor \"" + name + "\"";
  if (!entry.is_object()) corrupt(source, where + ": entry is not an object");
  for (const auto& [key, value] : entry.items()) {
    (void)value;
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      corrupt(source, where + ": unexpected field \"" + key + "\"");
  }
  if (!entry.contains("dtype") || !entry["dtype"].is_string())
    corrupt(source, where + ": missing string field \"dtype\"");
  if (!entry.contains("shape") || !entry["shape"].is_array())
    corrupt(source, where + ": missing array field \"shape\"");
  if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2)
    corrupt(source, where + ": \"data_offsets\" must be [begin, end]");

  SafetensorsTensorInfo info;
  info.name = name;
  const std::string dtype = entry["dtype"].get<std::string>();
  if (!parse_dtype(dtype, &info.dtype))
    corrupt(source, where + ": unknown dtype \"" + dtype + "\"");

  int64_t numel = 1;
  for (const json& dim : entry["shape"]) {
    if (!dim.is_number_unsigned())
      corrupt(source, where + ": shape entries must be non-negative integers");
    const uint64_t d = dim.get<uint64_t>();
    if (d > uint64_t(kMaxDim))
      corrupt(source, where + ": dimension " + std::to_string(d) + " too large");
    info.shape.push_back(int64_t(d));
    if (__builtin_mul_overflow(numel, int64_t(d), &numel) || numel > kMaxDim)
      corrupt(source, where + ": shape " + shape_to_string(info.shape) + " has too many elements");
  }
  if (info.shape.size() > 8) corrupt(source, where + ": more than 8 dimensions");

  const json& offsets = entry["data_offsets"];
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    corrupt(source, where + ": data_offsets must be non-negative integers");
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end) corrupt(source, where + ": data_offsets begin > end");
  if (info.end > data_size)
    corrupt(source, where + ": data_offsets end " + std::to_string(info.end) +
                        " is past the data section (" + std::to_string(data_size) + " bytes)");
  const int64_t expected = dtype_bytes_for(info.dtype, numel);
  if (expected < 0)
    corrupt(source, where + ": " + std::to_string(numel) + " elements of " +
                        std::string(dtype_name(info.dtype)) + " do not fill whole bytes");
  if (uint64_t(expected) != info.end - info.begin)
    corrupt(source, where + ": shape " + shape_to_string(info.shape) + " x " +
                        std::string(dtype_name(info.dtype)) + " needs " + std::to_string(expected) +
                        " bytes but data_offsets span " + std::to_string(info.end - info.begin));
  return info;
}

// Every pair of non-empty tensors, not only neighbours: sorted by start, each must begin at or
// after the furthest end seen so far (an empty tensor in between must not hide an overlap).
void check_no_overlap(std::vector<SafetensorsTensorInfo> tensors, std::string_view source) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  const SafetensorsTensorInfo* furthest = nullptr;  // the non-empty tensor ending last so far
  for (const auto& cur : tensors) {
    if (cur.begin == cur.end) continue;
    if (furthest && cur.begin < furthest->end)
      corrupt(source, "tensors \"" + furthest->name + "\" and \"" + cur.name +
                          "\" overlap in the data section");
    if (!furthest || cur.end > furthest->end) furthest = &cur;
  }
}

SafetensorsHeader parse_header_or_throw(std::span<const std::byte> file, std::string_view source) {
  if (file.size() < 8)
    corrupt(source, "file is " + std::to_string(file.size()) +
                        " bytes, shorter than the 8-byte header length");
  SafetensorsHeader header;
  header.header_bytes = read_u64_le(file.data());
  if (header.header_bytes > kSafetensorsMaxHeaderBytes)
    corrupt(source, "header length " + std::to_string(header.header_bytes) + " exceeds the " +
                        std::to_string(kSafetensorsMaxHeaderBytes) + "-byte limit");
  if (header.header_bytes > file.size() - 8)
    corrupt(source, "header length " + std::to_string(header.header_bytes) +
                        " is past the end of the " + std::to_string(file.size()) +
                        "-byte file (truncated?)");
  header.data_offset = 8 + header.header_bytes;
  const uint64_t data_size = file.size() - header.data_offset;
  std::string_view text(reinterpret_cast<const char*>(file.data() + 8), header.header_bytes);
  if (text.empty() || text.front() != '{') corrupt(source, "header does not start with '{'");

  const json root = parse_json_strict(text, source);
  if (!root.is_object()) corrupt(source, "header is not a JSON object");
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) corrupt(source, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          corrupt(source, "__metadata__ value of \"" + key + "\" is not a string");
        header.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_tensor_entry(name, entry, data_size, source));
  }
  check_no_overlap(header.tensors, source);
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return header;
}

std::string read_small_file(const std::string& path, size_t limit) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(StatusCode::kIo, path + ": " + ec.message());
  if (size > limit)
    fail(StatusCode::kCorruptFile,
         path + ": file of " + std::to_string(size) + " bytes is too large");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(StatusCode::kIo, path + ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A shard name from an index must be a plain file name inside the checkpoint directory.
void check_shard_name(const std::string& shard, const std::string& index_path) {
  if (shard.empty() || shard.find('/') != std::string::npos ||
      shard.find('\\') != std::string::npos || shard == "." || shard == "..")
    corrupt(index_path, "shard name \"" + shard + "\" is not a plain file name");
}

}  // namespace

Result<SafetensorsHeader> parse_safetensors_header(std::span<const std::byte> file,
                                                   std::string_view source) {
  return capture_result([&] { return parse_header_or_throw(file, source); });
}

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(StatusCode::kIo, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(StatusCode::kIo, path + ": not a regular file");
  }
  const size_t size = size_t(st.st_size);
  const std::byte* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status(StatusCode::kIo, path + ": mmap failed: " + std::strerror(err));
    }
    data = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

bool MappedFile::release_pages(const void* p, size_t n) const noexcept {
  const auto begin = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(data_);
  if (!data_ || begin < base || n > size_ || begin - base > size_ - n) return false;
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page, last = (begin + n) / page * page;
  // A read-only private file mapping: MADV_DONTNEED only unmaps the pages (never written, so
  // nothing is lost; they come back from the file on the next read).
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  return true;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.status();
  auto header = parse_safetensors_header(mapped.value()->bytes(), path);
  if (!header) return header.status();
  SafetensorsFile file;
  file.file_ = std::move(mapped.value());
  file.header_ = std::move(header.value());
  return file;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(
      header_.tensors.begin(), header_.tensors.end(), name,
      [](const SafetensorsTensorInfo& t, std::string_view n) { return t.name < n; });
  return it != header_.tensors.end() && it->name == name ? &*it : nullptr;
}

ConstTensorView SafetensorsFile::view(const SafetensorsTensorInfo& info) const noexcept {
  return ConstTensorView{file_->bytes().data() + header_.data_offset + info.begin, info.dtype,
                         info.shape};
}

Result<Checkpoint> Checkpoint::open(const std::string& path) {
  return capture_result([&] {
    namespace fs = std::filesystem;
    Checkpoint checkpoint;
    auto add_file = [&](const std::string& file_path) -> SafetensorsFile* {
      auto file = SafetensorsFile::open(file_path);
      throw_if_error(file.status());
      checkpoint.files_.push_back(std::make_unique<SafetensorsFile>(std::move(file.value())));
      return checkpoint.files_.back().get();
    };
    auto add_tensor = [&](const SafetensorsFile* file, const SafetensorsTensorInfo& info) {
      if (!checkpoint.index_.emplace(info.name, Entry{file, &info}).second)
        corrupt(file->path(), "tensor \"" + info.name + "\" appears in more than one shard");
    };

    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
      const SafetensorsFile* file = add_file(path);
      for (const auto& info : file->header().tensors) add_tensor(file, info);
      return checkpoint;
    }
    if (!fs::is_directory(path, ec)) fail(StatusCode::kIo, path + ": no such file or directory");
    const std::string index_path = (fs::path(path) / "model.safetensors.index.json").string();
    const std::string single_path = (fs::path(path) / "model.safetensors").string();
    if (fs::exists(index_path, ec)) {
      const json index = parse_json_strict(read_small_file(index_path, kMaxIndexBytes), index_path);
      if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        corrupt(index_path, "missing object \"weight_map\"");
      std::map<std::string, const SafetensorsFile*> shards;
      for (const auto& [name, shard_json] : index["weight_map"].items()) {
        if (!shard_json.is_string())
          corrupt(index_path, "weight_map entry \"" + name + "\" is not a string");
        const std::string shard = shard_json.get<std::string>();
        check_shard_name(shard, index_path);
        auto it = shards.find(shard);
        if (it == shards.end())
          it = shards.emplace(shard, add_file((fs::path(path) / shard).string())).first;
        const SafetensorsTensorInfo* info = it->second->find(name);
        if (!info) corrupt(index_path, "tensor \"" + name + "\" is not in its shard " + shard);
        add_tensor(it->second, *info);
      }
      return checkpoint;
    }
    if (fs::exists(single_path, ec)) {
      const SafetensorsFile* file = add_file(single_path);
      for (const auto& info : file->header().tensors) add_tensor(file, info);
      return checkpoint;
    }
    fail(StatusCode::kIo,
         path + ": neither model.safetensors.index.json nor model.safetensors found");
  });
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsWriteItem>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  return capture_status([&] {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& t : tensors) {
      const int64_t expected = dtype_bytes_for(t.dtype, shape_numel(t.shape));
      if (expected < 0 || uint64_t(expected) != t.bytes.size())
        fail(StatusCode::kInvalidArgument, "write_safetensors: tensor \"" + t.name + "\" has " +
                                               std::to_string(t.bytes.size()) +
                                               " bytes for shape " + shape_to_string(t.shape));
      header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.bytes.size()}}};
      offset += t.bytes.size();
    }
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) fail(StatusCode::kIo, tmp + ": cannot open for writing");
      const uint64_t n = text.size();
      for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
      out.write(text.data(), std::streamsize(text.size()));
      for (const auto& t : tensors)
        out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
      out.flush();
      if (!out) fail(StatusCode::kIo, tmp + ": write failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail(StatusCode::kIo, path + ": " + ec.message());
  });
}

Checkpoint::Entry Checkpoint::find(std::string_view name) const noexcept {
  auto it = index_.find(name);
  return it == index_.end() ? Entry{nullptr, nullptr} : it->second;
}

bool Checkpoint::release_pages(const void* p, size_t n) const noexcept {
  for (const auto& file : files_)
    if (file->mapping().release_pages(p, n)) return true;
  return false;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, entry] : index_) out.push_back(name);
  return out;
}

}  // namespace dsv4
