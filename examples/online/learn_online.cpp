// Reads CSV rows on standard input as they come (a header, then one row per line) and, for each, writes the
// model's prediction of the next row, then learns from the row: truncated BPTT(1, 52), one update per row
// over the last 52, continuing the training run's optimizer. At the end of the stream the model and
// everything needed to go on exactly are saved (rewind online --resume SAVE_DIR continues from there).
//   learn_online RUN_DIR SAVE_DIR < rows.csv
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>

#include "rewind/runtime/online.hpp"
#include "rewind/runtime/stream.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: learn_online RUN_DIR SAVE_DIR < rows.csv\n";
    return 2;
  }
  try {
    const std::string run = argv[1];
    rwd::runtime::Predictor predictor(run);
    // The run's optimizer at a constant rate, as rewind online continues a trained run.
    rwd::trainers::OptimizerConfig optimizer = predictor.config().optimizer;
    optimizer.schedule = "constant", optimizer.step_every = 0;
    rwd::runtime::OnlineLearner learner(std::move(predictor), {.k1 = 1, .k2 = 52}, optimizer);
    learner.continue_optimizer((std::filesystem::path(run) / "checkpoint.safetensors").string());

    std::string line;
    if (!std::getline(std::cin, line)) throw std::runtime_error("no header row on standard input");
    const rwd::runtime::Predictor& model = learner.predictor();
    rwd::runtime::RowParser parser(line, model.inputs(), model.targets(), {}, "");
    rwd::runtime::ParsedRow row;
    for (const std::string& name : model.targets()) std::cout << name << "_next,";
    std::cout << "rows_read\n";
    for (std::int64_t number = 2; std::getline(std::cin, line); ++number) {
      parser.parse(line, number, row);  // throws naming the line and column of a bad value
      const std::span<const double> next = learner.step(row.inputs, row.targets);
      for (double v : next) std::printf("%.17g,", v);
      std::printf("%lld\n", static_cast<long long>(learner.counts().rows));
      std::fflush(stdout);  // a prediction per row, as it arrives
    }
    learner.save(argv[2]);
    std::cerr << "learn_online: " << learner.counts().rows << " rows, " << learner.counts().updates
              << " updates; saved " << argv[2] << '\n';
  } catch (const std::exception& e) {
    std::cerr << "learn_online: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
