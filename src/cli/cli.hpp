// The dsv4 command-line tool: one function per subcommand.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace dsv4::cli {

// "--key value" pairs and bare flags after the subcommand.
struct Args {
  std::map<std::string, std::string> options;
  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = options.find(key);
    return it == options.end() ? fallback : it->second;
  }
  bool has(const std::string& key) const { return options.count(key) != 0; }
};

int command_info(const Args& args);
int command_eval(const Args& args);
int command_generate(const Args& args);
int command_demo(const Args& args);

}  // namespace dsv4::cli
