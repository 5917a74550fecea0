// The "influence balancing" task of Tallec & Ollivier (2017, "Unbiasing truncated backpropagation through
// time"), reconstructed from its description: one scalar parameter theta whose effect on the loss is positive
// over short horizons and negative over long ones, so that truncated BPTT with a short window follows a
// gradient of the wrong sign and runs away, while an unbiased estimate of the full gradient converges.
//
// The state is a shift register of n units: s'[i] = s[i + 1] + a_i theta, s[n] = 0, with a_i = +1 for the
// first p units and -1 for the others. The output reads unit 0, which sums the last n additions:
// y_t = theta (2p - n) once theta has been constant for n steps, and the loss (y_t - 1)^2 is zero at
// theta* = 1 / (2p - n). A truncation of k steps sees only the last k additions, sum_{i < k} a_i = k for
// k <= p: with p < n / 2 the full derivative 2p - n is negative and the truncated one positive.
//
// rewind's Model always has a linear head; here it is set to read unit 0 and left alone (only theta is
// trained, by plain SGD on the gradient the trainer plugin leaves in it). The trainers are the real plugins.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/data.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::test::influence {

struct Task {
  std::int64_t units = 10;    // n
  std::int64_t positive = 3;  // p < n / 2
  double theta_star() const { return 1.0 / static_cast<double>(2 * positive - units); }
};

class ShiftCell final : public models::Cell {
 public:
  ShiftCell(const models::CellSpec& spec, const Task& task)
      : input_(spec.input_size),
        units_(spec.hidden_size),
        theta_(spec.name("theta"), autodiff::Tensor(autodiff::Shape::matrix(1, 1), spec.dtype)),
        shift_(autodiff::Shape::matrix(units_, units_), spec.dtype),
        signs_(autodiff::Shape::matrix(1, units_), spec.dtype) {
    for (std::int64_t i = 0; i + 1 < units_; ++i) shift_.set((i + 1) * units_ + i, 1.0);  // s' = s @ shift
    for (std::int64_t i = 0; i < units_; ++i) signs_.set(i, i < task.positive ? 1.0 : -1.0);
  }
  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return units_; }
  std::vector<autodiff::Parameter*> parameters() override { return {&theta_}; }
  models::State step(autodiff::Tape& tape, const autodiff::Var& /*x*/, const models::State& s) override {
    const autodiff::Var added = autodiff::matmul(tape.param(theta_), tape.input(signs_));  // [1, n]
    return {autodiff::matmul(s[0], tape.input(shift_)) + added};
  }

 private:
  std::int64_t input_, units_;
  autodiff::Parameter theta_;
  autodiff::Tensor shift_, signs_;
};

// One stream of `steps` steps whose target is 1 at every step (the input is unused).
inline std::unique_ptr<trainers::SeriesData> data(std::int64_t steps) {
  auto d = std::make_unique<trainers::SeriesData>(1, steps, 1, 1);
  for (std::int64_t t = 0; t < steps; ++t) d->targets(t).set(0, 1.0);
  return d;
}

inline std::unique_ptr<models::Model> model(const Task& task) {
  models::ModelConfig c;
  c.input_size = 1;
  c.hidden_size = task.units;
  c.output_size = 1;
  c.dtype = autodiff::DType::f64;
  auto m = std::make_unique<models::Model>(
      c, [&](const models::CellSpec& spec) { return std::make_unique<ShiftCell>(spec, task); });
  autodiff::Tensor& w = m->parameter("head.weight").value();
  for (std::int64_t i = 0; i < w.numel(); ++i) w.set(i, i == 0 ? 1.0 : 0.0);
  m->parameter("head.bias").value().fill(0.0);
  return m;
}

struct Point {
  std::int64_t update = 0;
  double theta = 0;
  double loss = 0;  // the mean loss of the updates since the previous point
};

// Trains theta from 0 with SGD for `updates` updates of `trainer`, passes of `pass_steps` steps (each pass
// starts from a zero state); a Point every `every` updates. Stops early once |theta| exceeds 100 |theta*|.
inline std::vector<Point> train(const Task& task, const std::string& trainer,
                                const std::map<std::string, std::string>& options, double lr,
                                std::int64_t updates, std::int64_t every, std::int64_t pass_steps = 2000) {
  auto m = model(task);
  const auto stream = data(pass_steps);
  auto t = builtin_plugins().make_trainer(trainer, options);
  autodiff::Tape tape(autodiff::DType::f64);
  autodiff::Tensor& theta = m->parameter("rnn.theta_l0").value();
  const autodiff::Tensor& grad = m->parameter("rnn.theta_l0").grad();
  std::vector<Point> out;
  double loss_sum = 0;
  for (std::int64_t u = 1; u <= updates; ++u) {
    if (u == 1 || t->done()) t->begin(*m, *stream, tape);
    loss_sum += t->next(*m, *stream, tape).loss;
    theta.set(0, theta.get(0) - lr * grad.get(0));
    if (u % every == 0) {
      out.push_back({u, theta.get(0), loss_sum / static_cast<double>(every)});
      loss_sum = 0;
      if (!(std::abs(theta.get(0)) <= 100 * std::abs(task.theta_star()))) break;
    }
  }
  return out;
}

}  // namespace rwd::test::influence
