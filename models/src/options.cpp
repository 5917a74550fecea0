#include "rewind/models/options.hpp"

#include <charconv>
#include <stdexcept>

namespace rwd::models {
namespace {

bool parse_integer(const std::string& s, std::int64_t& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && !s.empty();
}

bool parse_real(const std::string& s, double& out) {
  try {
    std::size_t used = 0;
    out = std::stod(s, &used);
    return used == s.size();
  } catch (const std::exception&) {
    return false;
  }
}

bool parse_boolean(const std::string& s, bool& out) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") return out = true, true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return out = false, true;
  return false;
}

bool valid(OptionType type, const std::string& value) {
  std::int64_t i;
  double d;
  bool b;
  switch (type) {
    case OptionType::integer:
      return parse_integer(value, i);
    case OptionType::real:
      return parse_real(value, d);
    case OptionType::boolean:
      return parse_boolean(value, b);
    case OptionType::string:
      return true;
  }
  return false;
}

}  // namespace

const char* name_of(OptionType t) {
  switch (t) {
    case OptionType::integer:
      return "integer";
    case OptionType::real:
      return "real number";
    case OptionType::boolean:
      return "boolean (true/false)";
    case OptionType::string:
      return "string";
  }
  return "?";
}

Options Options::resolve(std::span<const OptionSpec> specs, const std::map<std::string, std::string>& given,
                         const std::string& owner) {
  Options out;
  for (const auto& [name, value] : given) {
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : specs)
      if (name == s.name) spec = &s;
    if (spec == nullptr) {
      std::string declared;
      for (const OptionSpec& s : specs) declared += (declared.empty() ? "" : ", ") + std::string(s.name);
      throw std::invalid_argument(owner + ": unknown option '" + name +
                                  "' (declared: " + (declared.empty() ? "none" : declared) + ")");
    }
    if (!valid(spec->type, value))
      throw std::invalid_argument(owner + ": option '" + name + "' expects a " + name_of(spec->type) +
                                  ", got '" + value + "'");
    out.values_[name] = value;
  }
  for (const OptionSpec& s : specs) out.values_.try_emplace(s.name, s.default_value);
  return out;
}

const std::string& Options::raw(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) throw std::invalid_argument("option '" + name + "' was not declared");
  return it->second;
}

std::int64_t Options::integer(const std::string& name) const {
  std::int64_t v = 0;
  if (!parse_integer(raw(name), v)) throw std::invalid_argument("option '" + name + "' is not an integer");
  return v;
}
double Options::real(const std::string& name) const {
  double v = 0;
  if (!parse_real(raw(name), v)) throw std::invalid_argument("option '" + name + "' is not a real number");
  return v;
}
bool Options::boolean(const std::string& name) const {
  bool v = false;
  if (!parse_boolean(raw(name), v)) throw std::invalid_argument("option '" + name + "' is not a boolean");
  return v;
}
const std::string& Options::string(const std::string& name) const {
  return raw(name);
}

}  // namespace rwd::models
