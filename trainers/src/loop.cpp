#include "rewind/trainers/loop.hpp"

#include <chrono>
#include <cmath>

namespace rwd::trainers {

Loop::Loop(Model& model, Trainer& trainer, Optimizer& optimizer,
           std::function<const Dataset&(std::int64_t)> data_for_pass, LoopOptions options)
    : model_(model),
      trainer_(trainer),
      optimizer_(optimizer),
      data_for_pass_(std::move(data_for_pass)),
      options_(options),
      tape_(model.config().dtype) {}

void Loop::run(const std::function<bool(const UpdateReport&)>& on_update) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<autodiff::Parameter*> params = model_.parameters();
  while (true) {
    if (options_.max_updates > 0 && optimizer_.updates() >= options_.max_updates) return;
    if (!in_pass_) {
      if (options_.max_passes > 0 && pass_ >= options_.max_passes) return;
      trainer_.begin(model_, data_for_pass_(pass_), tape_);
      in_pass_ = true;
    }
    const Dataset& data = data_for_pass_(pass_);
    UpdateReport report;
    report.stats = trainer_.next(model_, data, tape_);
    report.update = optimizer_.updates() + 1;
    report.pass = pass_;
    if (!std::isfinite(report.stats.loss)) {
      const std::string parameter = first_nonfinite(params);
      const std::string node = tape_.first_nonfinite();
      throw NonFiniteError("update " + std::to_string(report.update) + " (steps " +
                           std::to_string(report.stats.first_step) + " to " +
                           std::to_string(report.stats.end_step) + " of pass " + std::to_string(pass_) +
                           "): the loss is " + std::to_string(report.stats.loss) +
                           (parameter.empty() ? "" : "; " + parameter) +
                           (node.empty() ? "" : "; first non-finite value on the tape: " + node));
    }
    report.grad_norm =
        options_.clip > 0 ? clip_grad_norm(params, options_.clip) : clip_grad_norm(params, INFINITY);
    if (!std::isfinite(report.grad_norm))
      throw NonFiniteError("update " + std::to_string(report.update) + ": " + first_nonfinite(params));
    report.lr = optimizer_.current_lr();
    optimizer_.step(params);
    if (trainer_.done()) {
      in_pass_ = false;
      ++pass_;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!on_update(report)) return;
    if (options_.time_limit_seconds > 0 && report.seconds >= options_.time_limit_seconds) return;
  }
}

}  // namespace rwd::trainers
