#include "rewind/trainers/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <stdexcept>
#include <string>

namespace rwd::trainers {

namespace {
template <class F>
void for_each_element(Tensor& t, F&& f) {
  if (t.dtype() == autodiff::DType::f32) {
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) f(p[i]);
  } else {
    double* p = t.data<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) f(p[i]);
  }
}

// In double, in 8 partial sums added at the end: a single running sum is a chain of dependent adds that
// does not vectorise (4.5 M of them, 5 ms, per update of an LSTM at hidden 1024). The order is fixed, so the
// result does not vary between runs.
template <class T>
double sum_of_squares(const T* v, std::int64_t n) {
  constexpr int lanes = 8;
  double part[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (int j = 0; j < lanes; ++j) part[j] += static_cast<double>(v[i + j]) * v[i + j];
  for (; i < n; ++i) part[0] += static_cast<double>(v[i]) * v[i];
  double total = 0;
  for (double p : part) total += p;
  return total;
}
}  // namespace

Optimizer::Optimizer(OptimizerConfig config) : config_(std::move(config)) {
  const OptimizerConfig& c = config_;
  auto refuse = [](const std::string& what) { throw std::invalid_argument("optimizer: " + what); };
  if (c.kind != "sgd" && c.kind != "adam" && c.kind != "adamw" && c.kind != "rmsprop")
    refuse("'" + c.kind + "' is not sgd, adam, adamw or rmsprop");
  if (!(c.lr >= 0 && std::isfinite(c.lr)))
    refuse("learning rate must be finite and >= 0, got " + std::to_string(c.lr));
  if (!(c.momentum >= 0 && c.momentum < 1))
    refuse("momentum must be in [0, 1), got " + std::to_string(c.momentum));
  // Adam has its own first moment (beta1): a momentum given with it would be silently ignored.
  if (c.kind != "sgd" && c.momentum != 0)
    refuse("momentum applies to sgd only; " + c.kind + " has none here");
  if (c.nesterov && (c.kind != "sgd" || c.momentum == 0)) refuse("nesterov needs sgd with a momentum");
  if (!(c.weight_decay >= 0 && std::isfinite(c.weight_decay)))
    refuse("weight decay must be finite and >= 0, got " + std::to_string(c.weight_decay));
  if (!(c.alpha >= 0 && c.alpha < 1)) refuse("rmsprop's alpha must be in [0, 1)");
  if (c.schedule != "constant" && c.schedule != "step" && c.schedule != "cosine" && c.schedule != "plateau")
    refuse("schedule '" + c.schedule + "' is not constant, step, cosine or plateau");
  if (c.schedule == "step" && c.step_every <= 0)
    refuse("the step schedule needs a step interval (--lr-step-every)");
  if (c.schedule == "cosine" && c.total_updates <= c.warmup)
    refuse("the cosine schedule needs an update limit (--max-updates) beyond the warm-up");
  if (c.warmup < 0) refuse("warm-up must be >= 0 updates");
  // Given with another schedule they would be ignored without a word.
  if (c.warmup > 0 && c.schedule != "cosine") refuse("warm-up applies to the cosine schedule only");
  if (c.lr_min > 0 && c.schedule != "cosine" && c.schedule != "plateau")
    refuse("lr_min applies to the cosine and plateau schedules only");
  if (c.schedule == "plateau" && !(c.gamma < 1))
    refuse("the plateau schedule's factor gamma must be < 1, got " + std::to_string(c.gamma));
  if (c.patience < 0) refuse("patience must be >= 0 evaluations");
  if (!(c.lr_min >= 0 && c.lr_min <= c.lr)) refuse("lr_min must be in [0, lr]");
  if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1)) refuse("adam's betas must be in [0, 1)");
  if (!(c.eps > 0)) refuse("adam's eps must be > 0");
  if (c.step_every < 0) refuse("the step-decay interval must be >= 0");
  // gamma <= 0 would flip the rate's sign every interval (gradient ascent) or zero it.
  if (!(c.gamma > 0 && std::isfinite(c.gamma)))
    refuse("the step-decay factor gamma must be > 0, got " + std::to_string(c.gamma));
}

double Optimizer::current_lr() const {
  const OptimizerConfig& c = config_;
  const auto u = static_cast<double>(updates_);  // 0 for the first update
  if (c.schedule == "cosine") {
    if (updates_ < c.warmup) return c.lr * (u + 1) / static_cast<double>(c.warmup);
    const double progress =
        std::min(1.0, (u - static_cast<double>(c.warmup)) / static_cast<double>(c.total_updates - c.warmup));
    return c.lr_min + (c.lr - c.lr_min) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
  }
  if (c.schedule == "plateau") {
    double lr = c.lr;  // step by step as torch does, so that the rate is bitwise torch's
    for (std::int64_t i = 0; i < plateau_reductions_; ++i) lr = std::max(lr * c.gamma, c.lr_min);
    return lr;
  }
  if (c.step_every <= 0) return c.lr;
  return c.lr * std::pow(c.gamma, static_cast<double>(updates_ / c.step_every));
}

bool Optimizer::observe_validation(double loss) {
  if (config_.schedule != "plateau") return false;
  constexpr double threshold = 1e-4, min_change = 1e-8;  // torch's defaults
  if (loss < plateau_best_ * (1 - threshold)) {
    plateau_best_ = loss, plateau_bad_ = 0;
    return false;
  }
  if (++plateau_bad_ <= config_.patience) return false;
  plateau_bad_ = 0;
  const double before = current_lr();
  if (before - std::max(before * config_.gamma, config_.lr_min) <= min_change) return false;
  ++plateau_reductions_;
  return true;
}

std::map<std::string, std::string> Optimizer::schedule_state() const {
  if (config_.schedule != "plateau") return {};
  char best[40];
  std::snprintf(best, sizeof best, "%.17g", plateau_best_);  // round-trips exactly
  return {{"rewind.plateau.best", best},
          {"rewind.plateau.bad", std::to_string(plateau_bad_)},
          {"rewind.plateau.reductions", std::to_string(plateau_reductions_)}};
}

void Optimizer::restore_schedule_state(const std::map<std::string, std::string>& metadata) {
  if (config_.schedule != "plateau") return;
  auto field = [&](const std::string& key) -> const std::string& {
    const auto it = metadata.find(key);
    if (it == metadata.end()) throw std::invalid_argument("the plateau schedule's '" + key + "' is missing");
    return it->second;
  };
  try {
    std::size_t used = 0;
    const std::string& best = field("rewind.plateau.best");
    const double b = std::stod(best, &used);
    if (used != best.size()) throw std::invalid_argument(best);
    const std::int64_t bad = std::stoll(field("rewind.plateau.bad")),
                       reductions = std::stoll(field("rewind.plateau.reductions"));
    if (bad < 0 || reductions < 0) throw std::invalid_argument("negative count");
    plateau_best_ = b, plateau_bad_ = bad, plateau_reductions_ = reductions;
  } catch (const std::logic_error& e) {
    throw std::invalid_argument(std::string("the plateau schedule's state is malformed (") + e.what() + ")");
  }
}

void Optimizer::allocate_state(const std::vector<Parameter*>& params) {
  const bool adam = config_.kind == "adam" || config_.kind == "adamw";
  if ((adam || config_.kind == "rmsprop" || config_.momentum > 0) && first_.size() != params.size()) {
    first_.clear(), second_.clear();
    for (Parameter* p : params) {
      first_.emplace_back(p->value().shape(), p->value().dtype());
      if (adam) second_.emplace_back(p->value().shape(), p->value().dtype());
    }
  }
}

void Optimizer::step(const std::vector<Parameter*>& params) {
  const OptimizerConfig& c = config_;
  const bool adam = c.kind == "adam" || c.kind == "adamw";
  allocate_state(params);
  const double lr = current_lr();
  ++updates_;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor& w = params[i]->value();
    const Tensor& g = params[i]->grad();
    auto apply = [&]<class T>(T* wv, const T* gv) {
      const std::int64_t n = w.numel();
      // L2 (torch's weight_decay): the gradient read below is g + wd * p; adamw decays the weight instead.
      const T l2 = c.kind == "adamw" ? T(0) : static_cast<T>(c.weight_decay);
      if (c.kind == "adamw" && c.weight_decay > 0) {
        const T keep = static_cast<T>(1 - lr * c.weight_decay);
        for (std::int64_t k = 0; k < n; ++k) wv[k] *= keep;
      }
      if (adam) {
        // torch.optim.Adam / AdamW: bias-corrected moments, eps outside the square root.
        T* m = first_[i].data<T>();
        T* v = second_[i].data<T>();
        const double c1 = 1 - std::pow(c.beta1, static_cast<double>(updates_));
        const double c2 = 1 - std::pow(c.beta2, static_cast<double>(updates_));
        const T b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
        const T step_size = static_cast<T>(lr / c1), root_c2 = static_cast<T>(std::sqrt(c2)),
                eps = static_cast<T>(c.eps);
        for (std::int64_t k = 0; k < n; ++k) {
          const T gk = gv[k] + l2 * wv[k];
          m[k] = b1 * m[k] + (T(1) - b1) * gk;
          v[k] = b2 * v[k] + (T(1) - b2) * gk * gk;
          wv[k] -= step_size * m[k] / (std::sqrt(v[k]) / root_c2 + eps);
        }
      } else if (c.kind == "rmsprop") {
        // torch.optim.RMSprop (not centered, no momentum): square_avg = alpha sq + (1 - alpha) g^2.
        T* sq = first_[i].data<T>();
        const T a = static_cast<T>(c.alpha), eps = static_cast<T>(c.eps);
        for (std::int64_t k = 0; k < n; ++k) {
          const T gk = gv[k] + l2 * wv[k];
          sq[k] = a * sq[k] + (T(1) - a) * gk * gk;
          wv[k] -= static_cast<T>(lr) * gk / (std::sqrt(sq[k]) + eps);
        }
      } else if (c.momentum > 0) {
        // torch.optim.SGD: buf = momentum * buf + g (buf = g on the first update), p -= lr * buf, or with
        // nesterov p -= lr * (g + momentum * buf).
        T* buf = first_[i].data<T>();
        const T mu = static_cast<T>(c.momentum), first = updates_ == 1 ? T(0) : mu;
        for (std::int64_t k = 0; k < n; ++k) {
          const T gk = gv[k] + l2 * wv[k];
          buf[k] = first * buf[k] + gk;
          wv[k] -= static_cast<T>(lr) * (c.nesterov ? gk + mu * buf[k] : buf[k]);
        }
      } else {
        for (std::int64_t k = 0; k < n; ++k) wv[k] -= static_cast<T>(lr) * (gv[k] + l2 * wv[k]);
      }
    };
    if (w.dtype() == autodiff::DType::f32) {
      apply(w.data<float>(), g.data<float>());
    } else {
      apply(w.data<double>(), g.data<double>());
    }
  }
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state(const std::vector<Parameter*>& params) {
  allocate_state(params);
  std::vector<std::pair<std::string, Tensor*>> out;
  for (std::size_t i = 0; i < first_.size() && i < params.size(); ++i) {
    const char* first = config_.kind == "rmsprop" ? ".square_avg"
                        : config_.kind == "sgd"   ? ".momentum_buffer"
                                                  : ".exp_avg";
    out.emplace_back("optimizer." + params[i]->name() + first, &first_[i]);
    if (i < second_.size()) out.emplace_back("optimizer." + params[i]->name() + ".exp_avg_sq", &second_[i]);
  }
  return out;
}

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  double total = 0;
  for (Parameter* p : params) {
    const Tensor& g = p->grad();
    total += g.dtype() == autodiff::DType::f32 ? sum_of_squares(g.data<float>(), g.numel())
                                               : sum_of_squares(g.data<double>(), g.numel());
  }
  const double norm = std::sqrt(total);
  if (norm > max_norm && norm > 0) {
    const double factor = max_norm / norm;
    for (Parameter* p : params)
      for_each_element(p->grad(),
                       [&](auto& v) { v = static_cast<std::remove_reference_t<decltype(v)>>(v * factor); });
  }
  return norm;
}

std::string first_nonfinite_value(const std::vector<Parameter*>& params) {
  for (Parameter* p : params) {
    bool bad = false;
    for_each_element(p->value(), [&](auto v) { bad = bad || !std::isfinite(v); });
    if (bad) return "parameter '" + p->name() + "' holds a non-finite value";
  }
  return {};
}

std::string first_nonfinite(const std::vector<Parameter*>& params) {
  // A non-finite value is the cause of non-finite gradients, so values are looked at first.
  if (std::string value = first_nonfinite_value(params); !value.empty()) return value;
  for (Parameter* p : params) {
    bool bad = false;
    for_each_element(p->grad(), [&](auto v) { bad = bad || !std::isfinite(v); });
    if (bad) return "the gradient of parameter '" + p->name() + "' is non-finite";
  }
  return {};
}

}  // namespace rwd::trainers
