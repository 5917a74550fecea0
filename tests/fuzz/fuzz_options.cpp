// libFuzzer target: plugin option parsing (--option KEY=VALUE lines against declared options).
#include <exception>
#include <map>
#include <sstream>

#include "rewind/models/options.hpp"

namespace {
constexpr rwd::models::OptionSpec specs[] = {{"k", rwd::models::OptionType::integer, "20", "an integer"},
                                             {"forget_bias", rwd::models::OptionType::real, "0", "a real"},
                                             {"fused", rwd::models::OptionType::boolean, "true", "a boolean"},
                                             {"name", rwd::models::OptionType::string, "", "a string"}};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  std::map<std::string, std::string> given;
  for (std::string line; std::getline(lines, line);) {
    const auto eq = line.find('=');
    given[line.substr(0, eq)] = eq == std::string::npos ? "" : line.substr(eq + 1);
  }
  try {
    const rwd::models::Options o = rwd::models::Options::resolve(specs, given, "fuzzed plugin");
    (void)o.integer("k");
    (void)o.real("forget_bias");
    (void)o.boolean("fused");
    (void)o.string("name");
  } catch (const std::exception&) {
  }
  return 0;
}
