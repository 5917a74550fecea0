// Cell step throughput, forward + backward, for each built-in cell (fused and reference) at batch 32.
// Figures and commands: bench/README.md.
#include <benchmark/benchmark.h>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/registry.hpp"
#include "rewind/trainers/trainer.hpp"

using namespace rwd;

namespace {

const plugins::Registry& registry() {
  static const plugins::Registry r = [] {
    plugins::Registry loaded;
    loaded.load_directory(REWIND_BENCH_PLUGIN_DIR);
    return loaded;
  }();
  return r;
}

// One iteration: a window of `steps` steps from a zero state, then backward from the sum of the last h.
void cell_window(benchmark::State& state, const std::string& cell, bool fused, std::int64_t hidden) {
  constexpr std::int64_t batch = 32;
  constexpr int steps = 10;
  models::ModelConfig config;
  config.input_size = hidden;
  config.hidden_size = hidden;
  config.output_size = 1;
  auto model = registry().make_model(cell, config, {{"fused", fused ? "true" : "false"}});
  models::Cell& c = model->cell(0);
  const autodiff::Tensor x(autodiff::Shape::matrix(batch, hidden), autodiff::DType::f32);
  const std::vector<autodiff::Tensor> initial = c.initial_state(batch, autodiff::DType::f32);
  autodiff::Tape tape;
  for (auto _ : state) {
    tape.clear();
    models::State s;
    for (const autodiff::Tensor& t : initial) s.push_back(tape.input(t));
    const autodiff::Var xv = tape.input(x);
    for (int t = 0; t < steps; ++t) s = c.step(tape, xv, s);
    tape.backward(autodiff::sum(c.output(s)));
  }
  state.SetItemsProcessed(state.iterations() * steps * batch);  // time steps x batch
  state.counters["tape_peak_MiB"] = static_cast<double>(tape.memory().peak_bytes) / (1 << 20);
}

// One truncated(20) update of a token model through the trainer plugin: window record, backward, tape
// clear, i.e. what rewind train repeats. Random tokens, batch 32, embedding 64. In f64 the gradients sum
// their rows one time step (or row) at a time (docs/tape.md), which the f64 rows measure.
void trainer_update(benchmark::State& state, const std::string& cell, std::int64_t hidden,
                    autodiff::DType dtype) {
  constexpr std::int64_t batch = 32, vocab = 64, steps = 2000;
  trainers::TokenData data(batch, steps, vocab);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < batch; ++b) {
      data.input(t, b) = static_cast<std::int32_t>((t * 31 + b * 7) % vocab);
      data.target(t, b) = static_cast<std::int32_t>((t * 17 + b * 3) % vocab);
    }
  models::ModelConfig config;
  config.vocab_size = vocab;
  config.input_size = vocab;
  config.hidden_size = hidden;
  config.dtype = dtype;
  auto model = registry().make_model(cell, config);
  auto trainer = registry().make_trainer("truncated", {{"k", "20"}});
  autodiff::Tape tape(dtype);
  trainer->begin(*model, data, tape);
  for (auto _ : state) {
    if (trainer->done()) trainer->begin(*model, data, tape);
    benchmark::DoNotOptimize(trainer->next(*model, data, tape).loss);
  }
  state.SetItemsProcessed(state.iterations() * 20 * batch);  // time steps x batch
}

const bool registered = [] {
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (std::int64_t hidden : {64, 256})
      benchmark::RegisterBenchmark(
          ("BM_TruncatedUpdate/" + std::string(cell) + "/" + std::to_string(hidden)).c_str(),
          [=](benchmark::State& s) { trainer_update(s, cell, hidden, autodiff::DType::f32); })
          ->Unit(benchmark::kMillisecond);
  for (const char* cell : {"gru", "lstm"})
    for (std::int64_t hidden : {64, 256})
      benchmark::RegisterBenchmark(
          ("BM_TruncatedUpdate/" + std::string(cell) + "/" + std::to_string(hidden) + "/f64").c_str(),
          [=](benchmark::State& s) { trainer_update(s, cell, hidden, autodiff::DType::f64); })
          ->Unit(benchmark::kMillisecond);
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (bool fused : {true, false})
      for (std::int64_t hidden : {64, 256, 1024})
        benchmark::RegisterBenchmark(("BM_CellStep/" + std::string(cell) +
                                      (fused ? "/fused/" : "/reference/") + std::to_string(hidden))
                                         .c_str(),
                                     [=](benchmark::State& s) { cell_window(s, cell, fused, hidden); })
            ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
