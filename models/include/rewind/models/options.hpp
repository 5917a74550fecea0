// Plugin options: declared by a plugin as plain data, given by the user as strings, checked against the
// declaration before the plugin sees them.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "rewind/models/export.hpp"

namespace rwd::models {

enum class OptionType : std::uint8_t { integer, real, boolean, string };
REWIND_MODELS_EXPORT const char* name_of(OptionType t);

struct OptionSpec {
  const char* name;
  OptionType type;
  const char* default_value;
  const char* help;
};

// Validated option values: every declared option is present (given or default) and parses as its type.
class REWIND_MODELS_EXPORT Options {
 public:
  Options() = default;
  // Throws std::invalid_argument naming `owner` for an undeclared option or a value of the wrong type.
  static Options resolve(std::span<const OptionSpec> specs, const std::map<std::string, std::string>& given,
                         const std::string& owner);

  std::int64_t integer(const std::string& name) const;
  double real(const std::string& name) const;
  bool boolean(const std::string& name) const;
  const std::string& string(const std::string& name) const;
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  const std::string& raw(const std::string& name) const;
  std::map<std::string, std::string> values_;
};

}  // namespace rwd::models
