// Whole-window recording (Model::run, Cell::run and the *_sequence ops) against the step-by-step reference
// cells built from primitives only: the same outputs, final states and gradients, with rows restarting
// mid-window, at 1 and 2 layers.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Shape;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

namespace {

constexpr std::int64_t batch = 3, steps = 5;

models::ModelConfig config(int layers) {
  models::ModelConfig c;
  c.input_size = 4;
  c.hidden_size = 3;
  c.layers = layers;
  c.output_size = 2;
  c.dtype = DType::f64;
  c.seed = 11;
  c.init_range = 0.8;
  return c;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a.get(i) - b.get(i)) / std::max(1e-12, std::abs(b.get(i))));
  return worst;
}

struct Outcome {
  Tensor outputs;                       // [steps * batch, output_size]
  std::vector<Tensor> final_state;      // every layer's
  std::vector<Tensor> parameter_grads;  // of sum(outputs * weights) + sum(final states)
  Tensor input_grad;
};

// Backpropagates sum(y * weights) + the sum of every final state, and collects what the test compares.
Outcome backpropagate(models::Model& model, Tape& tape, const models::ModelState& state, const Var& xs,
                      const Var& y, const Tensor& weights) {
  Var loss = autodiff::sum(y * tape.input(weights));
  for (const models::State& layer : state)
    for (const Var& v : layer) loss = loss + autodiff::sum(v);
  tape.backward(loss);
  Outcome out{y.value(), {}, {}, tape.grad(xs)};
  model.end(state, out.final_state);
  for (autodiff::Parameter* p : model.parameters()) out.parameter_grads.push_back(p->grad());
  return out;
}

// The reference: step() per step, restarting rows multiplied by a zero mask, outputs stacked by hand.
Outcome by_steps(models::Model& model, const Tensor& x, std::span<const std::uint8_t> resets,
                 const Tensor& weights) {
  Tape tape(DType::f64);
  models::ModelState state;
  model.begin(tape, model.initial_state(batch), state);
  const Var xs = tape.input(x, true);
  std::vector<Var> outputs;
  for (std::int64_t t = 0; t < steps; ++t) {
    Tensor keep(Shape::matrix(batch, model.config().hidden_size), DType::f64);
    for (std::int64_t i = 0; i < keep.numel(); ++i)
      keep.set(i, resets.empty() || resets[static_cast<std::size_t>(t * batch + i / keep.shape().cols)] == 0);
    for (models::State& layer : state)
      for (Var& v : layer) v = v * tape.input(keep);
    outputs.push_back(model.step(tape, autodiff::slice_rows(xs, t * batch, (t + 1) * batch), state));
  }
  return backpropagate(model, tape, state, xs, autodiff::concat_rows(outputs), weights);
}

Outcome by_window(models::Model& model, const Tensor& x, std::span<const std::uint8_t> resets,
                  const Tensor& weights) {
  Tape tape(DType::f64);
  models::ModelState state;
  model.begin(tape, model.initial_state(batch), state);
  const Var xs = tape.input(x, true);
  return backpropagate(model, tape, state, xs, model.run(tape, xs, state, resets), weights);
}

}  // namespace

TEST_CASE("a window run equals the reference cell stepped one step at a time", "[sequence][cells]") {
  const Tensor x = test::random_tensor(Shape::matrix(steps * batch, 4), DType::f64, 3);
  const Tensor weights = test::random_tensor(Shape::matrix(steps * batch, 2), DType::f64, 4);
  std::vector<std::uint8_t> resets(steps * batch, 0);
  resets[0 * batch + 2] = 1;  // row 2 at step 0 (from the initial state)
  resets[2 * batch + 0] = 1;  // row 0 at step 2
  resets[4 * batch + 0] = resets[4 * batch + 1] = 1;
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (int layers : {1, 2})
      for (bool fused : {true, false})
        for (bool with_resets : {false, true}) {
          INFO(cell << ", " << layers << " layer(s), " << (fused ? "fused" : "reference") << " cell"
                    << (with_resets ? ", with resets" : ""));
          const std::span<const std::uint8_t> r = with_resets ? std::span(resets) : std::span<std::uint8_t>{};
          auto reference = test::make_model(cell, config(layers), false, {});
          auto windowed = test::make_model(cell, config(layers), fused, {});
          for (autodiff::Parameter* p : reference->parameters()) p->zero_grad();
          const Outcome want = by_steps(*reference, x, r, weights);
          const Outcome got = by_window(*windowed, x, r, weights);
          CHECK(relative_difference(got.outputs, want.outputs) <= 1e-12);
          CHECK(relative_difference(got.input_grad, want.input_grad) <= 1e-10);
          REQUIRE(got.final_state.size() == want.final_state.size());
          for (std::size_t i = 0; i < want.final_state.size(); ++i)
            CHECK(relative_difference(got.final_state[i], want.final_state[i]) <= 1e-12);
          for (std::size_t i = 0; i < want.parameter_grads.size(); ++i) {
            INFO(reference->parameters()[i]->name());
            CHECK(relative_difference(got.parameter_grads[i], want.parameter_grads[i]) <= 1e-10);
          }
        }
}

// Max |a - b| relative to the larger of 1 and max |b|: float against double.
double scaled_difference(const Tensor& a, const Tensor& b) {
  double worst = 0, scale = 1;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(b.get(i)));
  for (std::int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a.get(i) - b.get(i)));
  return worst / scale;
}

TEST_CASE("float windows agree with double at sizes that fill the kernels' panels and split the batch",
          "[sequence][cells]") {
  // Hidden 40: 4H = 160 columns are five full float panels of the recurrent kernel, 3H = 120 end in a
  // partial one; batch 19 splits unevenly over threads and leaves partial row tiles. Windows of at most 4
  // rows read W_hh unpacked: 2 steps of 2 rows multiply a state that is not zero by it, forward and back.
  for (const auto& [rows, window] : {std::pair<std::int64_t, std::int64_t>{19, 4}, {3, 1}, {2, 2}})
    for (const char* cell : {"rnn", "gru", "lstm"}) {
      INFO(cell << ", " << window << " step(s) of " << rows << " rows");
      const Tensor x64 = test::random_tensor(Shape::matrix(window * rows, 24), DType::f64, 5);
      const Tensor weights64 = test::random_tensor(Shape::matrix(window * rows, 2), DType::f64, 6);
      std::vector<std::uint8_t> resets(static_cast<std::size_t>(window * rows), 0);
      resets[static_cast<std::size_t>((window - 1) * rows + rows - 1)] = 1;
      if (window > 2) resets[static_cast<std::size_t>(2 * rows + 7)] = 1;
      std::vector<Outcome> outcomes;
      for (DType dtype : {DType::f32, DType::f64}) {
        models::ModelConfig c = config(2);
        c.input_size = 24;
        c.hidden_size = 40;
        c.init_range = 0.3;
        c.dtype = dtype;
        auto model = test::make_model(cell, c, true, {});
        Tape tape(dtype);
        models::ModelState state;
        model->begin(tape, model->initial_state(rows), state);
        const Var xs = tape.input(x64.to(dtype), true);
        outcomes.push_back(
            backpropagate(*model, tape, state, xs, model->run(tape, xs, state, resets), weights64.to(dtype)));
      }
      const Outcome& f32 = outcomes[0];
      const Outcome& f64 = outcomes[1];
      CHECK(scaled_difference(f32.outputs, f64.outputs) <= 1e-5);
      CHECK(scaled_difference(f32.input_grad, f64.input_grad) <= 1e-4);
      for (std::size_t i = 0; i < f64.final_state.size(); ++i)
        CHECK(scaled_difference(f32.final_state[i], f64.final_state[i]) <= 1e-5);
      for (std::size_t i = 0; i < f64.parameter_grads.size(); ++i)
        CHECK(scaled_difference(f32.parameter_grads[i], f64.parameter_grads[i]) <= 1e-4);
    }
}

TEST_CASE("sequence ops reject inputs that do not fit, naming the op", "[sequence][errors]") {
  Tape tape(DType::f64);
  auto p = [&](std::int64_t r, std::int64_t c) {
    return tape.input(Tensor(Shape::matrix(r, c), DType::f64));
  };
  auto v = [&](std::int64_t n) { return tape.input(Tensor(Shape::vector(n), DType::f64)); };
  CHECK_THROWS_WITH(autodiff::lstm_sequence(p(7, 2), p(3, 4), p(3, 4), p(16, 2), p(16, 4), v(16), v(16)),
                    Catch::Contains("lstm_sequence") && Catch::Contains("[7, 2]"));
  CHECK_THROWS_WITH(autodiff::gru_sequence(p(6, 2), p(3, 4), p(12, 3), p(12, 4), v(12), v(12)),
                    Catch::Contains("gru_sequence") && Catch::Contains("expected [12, input]"));
  const std::uint8_t two[] = {0, 1};
  CHECK_THROWS_WITH(autodiff::rnn_sequence(p(6, 2), p(3, 4), p(4, 2), p(4, 4), v(4), v(4), two),
                    Catch::Contains("rnn_sequence") && Catch::Contains("2 reset flags for 6 rows"));
  CHECK_THROWS_WITH(autodiff::slice_rows(p(3, 2), 2, 4), Catch::Contains("slice_rows"));
}

TEST_CASE("a child made by fork() runs the sequence ops without its parent's worker threads",
          "[sequence][threads]") {
  auto run_window = [] {
    Tape tape(DType::f64);
    const auto v = [&](Shape s, std::uint64_t seed) {
      return tape.input(test::random_tensor(s, DType::f64, seed), true);
    };
    const Var y = autodiff::lstm_sequence(v(Shape::matrix(8 * 32, 16), 1), v(Shape::matrix(32, 16), 2),
                                          v(Shape::matrix(32, 16), 3), v(Shape::matrix(64, 16), 4),
                                          v(Shape::matrix(64, 16), 5), v(Shape::vector(64), 6),
                                          v(Shape::vector(64), 7));
    tape.backward(autodiff::sum(y));
  };
  run_window();  // the parent's pool is up (on a machine with more than one core)
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    run_window();
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
