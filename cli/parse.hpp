// Command-line parsing every subcommand shares.
#pragma once

#include <boost/program_options.hpp>
#include <iostream>

namespace rwd::cli {

// Parses argv into vm and checks required options; for --help prints usage and the options and returns
// false, so the command returns 0 without running.
inline bool parse_command_line(int argc, const char* const* argv,
                               const boost::program_options::options_description& options,
                               boost::program_options::variables_map& vm, const char* usage) {
  namespace po = boost::program_options;
  po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
  if (vm.count("help")) {
    std::cout << usage << '\n' << options;
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace rwd::cli
