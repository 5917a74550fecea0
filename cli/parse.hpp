// Command-line parsing every subcommand shares.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rewind/runtime/text.hpp"

namespace rwd::cli {

// Parses argv into vm (with positional arguments when given) and checks required options; for --help prints
// usage and the options and returns false, so the command returns 0 without running.
inline bool parse_command_line(
    int argc, const char* const* argv, const boost::program_options::options_description& options,
    boost::program_options::variables_map& vm, const char* usage,
    const boost::program_options::positional_options_description* positional = nullptr) {
  namespace po = boost::program_options;
  po::command_line_parser parser(argc, argv);
  parser.options(options);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << usage << '\n' << options;
    return false;
  }
  po::notify(vm);
  return true;
}

// "a,b,,c" -> {"a", "b", "c"}: the comma-separated lists of options (--inputs, --seq, --trainers).
inline std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// The whole of text as an integer; `what` names the option in the error ("--seq: 'abc' is not an integer").
inline std::int64_t parse_integer(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  std::int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw std::invalid_argument(what + ": '" + text + "' is not an integer");
  return value;
}

// Defaults shown in --help as typed (0.1, not 0.10000000000000001).
using runtime::shortest;

// One argument for /bin/sh, whatever characters it holds.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace rwd::cli
