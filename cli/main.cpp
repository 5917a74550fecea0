#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "rewind/runtime/world.hpp"

namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int, const char* const*);
};

constexpr Command commands[] = {
    {"train", "train a model plugin with a trainer plugin (no options: LSTM on the bundled text, 90 s)",
     rwd::cli::run_train},
    {"sample", "generate text from a saved token model (bytes, characters or words)", rwd::cli::run_sample},
    {"eval", "loss per token, perplexity and bits per character of a saved model on a file",
     rwd::cli::run_eval},
    {"predict",
     "predictions of a saved model in the data's units: one step ahead, forecasts (--horizon), top-k tokens",
     rwd::cli::run_predict},
    {"online", "learn and predict on a live stream of CSV rows (stdin, a pipe, a growing file, a socket)",
     rwd::cli::run_online},
    {"tokenize", "text to a token file (flat uint16/uint32 ids, nanoGPT's train.bin) and its vocabulary",
     rwd::cli::run_tokenize},
    {"plot", "draw a run's loss and learning-rate curves from its metrics (gnuplot PNG)", rwd::cli::run_plot},
    {"bench-memory", "memory and speed of trainers side by side over sequence lengths (table, CSV, plot)",
     rwd::cli::run_bench_memory},
    {"plan", "the checkpoint plan for exact BPTT within a memory budget: recomputed steps and peak bytes",
     rwd::cli::run_plan},
    {"analyze",
     "what truncation costs in gradient: truncated vs full per k (truncation), gradient decay with lag "
     "(horizon)",
     rwd::cli::run_analyze},
    {"demo", "record an RNN on text, backpropagate full and truncated, print gradients and tape memory",
     rwd::cli::run_demo},
    {"plugins", "list the model and trainer plugins found, with their options and files",
     rwd::cli::run_plugins},
    {"gradcheck", "check a model plugin's gradients against finite differences in double precision",
     rwd::cli::run_gradcheck},
    {"graph", "write a model's unrolled tape as a Graphviz graph, with stop_gradient cuts drawn",
     rwd::cli::run_graph},
};

void usage(std::ostream& out) {
  out << "usage: rewind <command> [options]   (rewind <command> --help for its options)\n\ncommands:\n";
  std::size_t width = 0;
  for (const Command& c : commands) width = std::max(width, c.name.size());
  for (const Command& c : commands)
    out << "  " << c.name << std::string(width + 2 - c.name.size(), ' ') << c.summary << '\n';
  out << "\n  --help, --version\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string_view first = argv[1];
  if (first == "--help" || first == "-h") {
    usage(std::cout);
    return 0;
  }
  if (first == "--version") {
    std::cout << "rewind " << REWIND_VERSION << '\n';
    return 0;
  }
  for (const Command& c : commands) {
    if (c.name != first) continue;
    // Every command answers --version the same way.
    for (int i = 2; i < argc; ++i)
      if (std::string_view(argv[i]) == "--version") {
        std::cout << "rewind " << REWIND_VERSION << '\n';
        return 0;
      }
    rwd::runtime::World::init(argc, argv);
    int status = 1;
    try {
      status = c.run(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      if (rwd::runtime::World::distributed()) {
        // One write per line: ranks failing together must not interleave their messages (stderr is
        // unbuffered, so each << would be a write of its own).
        const std::string line = "rewind " + std::string(c.name) + " (rank " +
                                 std::to_string(rwd::runtime::World::rank()) + " of " +
                                 std::to_string(rwd::runtime::World::size()) + "): " + e.what() + "\n";
        std::cerr << line << std::flush;
        rwd::runtime::World::abort();
      }
      std::cerr << "rewind " << c.name << ": " << e.what() << '\n';
    }
    rwd::runtime::World::finalize();
    return status;
  }
  std::cerr << "rewind: unknown command '" << first << "'\n";
  usage(std::cerr);
  return 2;
}
