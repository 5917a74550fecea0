#include "rewind/trainers/loop.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

namespace rwd::trainers {

Loop::Loop(Model& model, Trainer& trainer, Optimizer& optimizer,
           std::function<const Dataset&(std::int64_t)> data_for_pass, LoopOptions options)
    : model_(model),
      trainer_(trainer),
      optimizer_(optimizer),
      data_for_pass_(std::move(data_for_pass)),
      options_(options),
      tape_(model.config().dtype) {
  if (options_.accumulate < 1)
    throw std::invalid_argument("accumulate: windows per update must be >= 1, got " +
                                std::to_string(options_.accumulate));
  if (!(options_.clip >= 0 && std::isfinite(options_.clip)))
    throw std::invalid_argument("clip: the gradient-norm limit must be >= 0 (0: no clipping), got " +
                                std::to_string(options_.clip));
}

namespace {
// y += a x over every element (f32 or f64, as the parameters).
void add_scaled(Tensor& y, double a, const Tensor& x) {
  if (y.dtype() == autodiff::DType::f32) {
    float* out = y.data<float>();
    const float* in = x.data<float>();
    for (std::int64_t i = 0; i < y.numel(); ++i) out[i] += static_cast<float>(a) * in[i];
  } else {
    double* out = y.data<double>();
    const double* in = x.data<double>();
    for (std::int64_t i = 0; i < y.numel(); ++i) out[i] += a * in[i];
  }
}
}  // namespace

void Loop::add_to_group(const std::vector<Parameter*>& params, const UpdateStats& window) {
  if (group_gradients_.size() != params.size()) {
    group_gradients_.clear();
    for (const Parameter* p : params) group_gradients_.emplace_back(p->grad().shape(), p->grad().dtype());
  }
  if (group_windows_++ == 0) {
    for (Tensor& g : group_gradients_) g.fill(0);
    group_ = window, group_loss_sum_ = 0, group_.loss_count = group_.correct = group_.steps_recorded = 0;
    group_.normalizer = 0;
  }
  if (window.loss_count > 0) {
    const double n = window.gradient_normalizer();
    for (std::size_t i = 0; i < params.size(); ++i) add_scaled(group_gradients_[i], n, params[i]->grad());
    group_.normalizer += n;
    group_loss_sum_ += static_cast<double>(window.loss_count) * window.loss;
  }
  group_.loss_count += window.loss_count, group_.correct += window.correct;
  group_.steps_recorded += window.steps_recorded;
  group_.end_step = window.end_step, group_.tape = window.tape, group_.k1 = window.k1, group_.k2 = window.k2;
}

UpdateStats Loop::close_group(const std::vector<Parameter*>& params) {
  const double count = static_cast<double>(group_.loss_count);
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i]->grad().fill(0);
    if (count > 0) add_scaled(params[i]->grad(), 1 / group_.normalizer, group_gradients_[i]);
  }
  group_.loss = count > 0 ? group_loss_sum_ / count : 0;
  group_windows_ = 0;
  return group_;
}

void Loop::run(const std::function<bool(const UpdateReport&)>& on_update) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<autodiff::Parameter*> params = model_.parameters();
  std::int64_t steps_since_report = 0;
  const auto agreed = [&](bool stop) { return options_.agree ? options_.agree(stop) : stop; };
  while (true) {
    if (options_.max_updates > 0 && optimizer_.updates() >= options_.max_updates) return;
    if (!in_pass_) {
      if (options_.max_passes > 0 && pass_ >= options_.max_passes) return;
      trainer_.begin(model_, data_for_pass_(pass_), tape_);
      in_pass_ = true;
      counted_in_pass_ = 0;
    }
    const Dataset& data = data_for_pass_(pass_);
    // Dropout masks of this update: restored exactly on resume (record_window adds the window's first step).
    tape_.random_key().seed = model_.config().seed;
    tape_.random_key().update = static_cast<std::uint64_t>(optimizer_.updates());
    UpdateReport report;
    report.stats = trainer_.next(model_, data, tape_);
    if (options_.accumulate > 1) {
      add_to_group(params, report.stats);
      if (group_windows_ < options_.accumulate && !trainer_.done()) continue;
      report.stats = close_group(params);
    }
    if (options_.reduce) options_.reduce(params, report.stats);
    report.update = optimizer_.updates() + 1;
    report.pass = pass_;
    steps_since_report += report.stats.steps_recorded;
    const bool counted = report.stats.loss_count > 0;
    counted_in_pass_ += counted;
    if (trainer_.done()) {
      in_pass_ = false;
      ++pass_;
      if (counted_in_pass_ == 0)
        throw std::invalid_argument("pass " + std::to_string(pass_ - 1) +
                                    " has no targets at all: there is nothing to train (is the task's delay "
                                    "longer than its steps?)");
    }
    const auto out_of_time = [&] {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      return options_.time_limit_seconds > 0 && seconds >= options_.time_limit_seconds;
    };
    // No counted target, no update: the gradient is zero, and an optimizer step would still move weights by
    // momentum or Adam's moments (PyTorch skips parameters without a gradient). docs/trainers.md.
    if (!counted) {
      if (agreed(out_of_time())) return;
      continue;
    }
    std::string nonfinite;  // the diagnosis, when the loss or the gradient is not finite
    if (!std::isfinite(report.stats.loss)) {
      const std::string parameter = first_nonfinite(params);
      const std::string node = tape_.first_nonfinite();
      nonfinite = "update " + std::to_string(report.update) + " (steps " +
                  std::to_string(report.stats.first_step) + " to " + std::to_string(report.stats.end_step) +
                  " of pass " + std::to_string(report.pass) + "): the loss is " +
                  std::to_string(report.stats.loss) + (parameter.empty() ? "" : "; " + parameter) +
                  (node.empty() ? "" : "; first non-finite value on the tape: " + node);
    } else {
      report.grad_norm =
          options_.clip > 0 ? clip_grad_norm(params, options_.clip) : clip_grad_norm(params, INFINITY);
      if (!std::isfinite(report.grad_norm))
        nonfinite = "update " + std::to_string(report.update) + ": " + first_nonfinite(params);
    }
    // Discarded before the optimizer step: parameters and optimizer state are those of the last good update.
    if (!nonfinite.empty()) {
      if (++consecutive_skips_ > options_.max_nonfinite_skips)
        throw NonFiniteError(options_.max_nonfinite_skips == 0
                                 ? nonfinite
                                 : nonfinite + " (" + std::to_string(consecutive_skips_) +
                                       " non-finite updates in a row, more than --max-skips " +
                                       std::to_string(options_.max_nonfinite_skips) + ")");
      ++skipped_since_report_;
      if (agreed(out_of_time())) return;
      continue;
    }
    consecutive_skips_ = 0;
    report.skipped_nonfinite = skipped_since_report_;
    skipped_since_report_ = 0;
    report.lr = optimizer_.current_lr();
    optimizer_.step(params);
    report.steps_recorded = steps_since_report;
    steps_since_report = 0;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const bool stop = !on_update(report) ||
                      (options_.time_limit_seconds > 0 && report.seconds >= options_.time_limit_seconds);
    if (agreed(stop)) return;
  }
}

}  // namespace rwd::trainers
