#include "token_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <limits>

namespace dsv4::cli {

Result<std::vector<int32_t>> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(StatusCode::kIo, path + ": cannot open");
  std::vector<int32_t> tokens;
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(word.c_str(), &end, 10);
    if (errno != 0 || end == word.c_str() || *end != '\0' ||
        value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max())
      return Status(StatusCode::kInvalidArgument, path + ": token " +
                                                      std::to_string(tokens.size()) + " (\"" +
                                                      word + "\") is not an integer id");
    tokens.push_back(int32_t(value));
  }
  if (tokens.empty()) return Status(StatusCode::kInvalidArgument, path + ": no token ids");
  return tokens;
}

}  // namespace dsv4::cli
