#include "rewind/trainers/optim.hpp"

#include <cmath>
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
}  // namespace

Optimizer::Optimizer(OptimizerConfig config) : config_(std::move(config)) {
  const OptimizerConfig& c = config_;
  auto refuse = [](const std::string& what) { throw std::invalid_argument("optimizer: " + what); };
  if (c.kind != "sgd" && c.kind != "adam") refuse("'" + c.kind + "' is not sgd or adam");
  if (!(c.lr >= 0 && std::isfinite(c.lr)))
    refuse("learning rate must be finite and >= 0, got " + std::to_string(c.lr));
  if (!(c.momentum >= 0 && c.momentum < 1))
    refuse("momentum must be in [0, 1), got " + std::to_string(c.momentum));
  // Adam has its own first moment (beta1): a momentum given with it would be silently ignored.
  if (c.kind == "adam" && c.momentum != 0) refuse("momentum applies to sgd only; adam uses beta1");
  if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1)) refuse("adam's betas must be in [0, 1)");
  if (!(c.eps > 0)) refuse("adam's eps must be > 0");
  if (c.step_every < 0) refuse("the step-decay interval must be >= 0");
  // gamma <= 0 would flip the rate's sign every interval (gradient ascent) or zero it.
  if (!(c.gamma > 0 && std::isfinite(c.gamma)))
    refuse("the step-decay factor gamma must be > 0, got " + std::to_string(c.gamma));
}

double Optimizer::current_lr() const {
  if (config_.step_every <= 0) return config_.lr;
  return config_.lr * std::pow(config_.gamma, static_cast<double>(updates_ / config_.step_every));
}

void Optimizer::allocate_state(const std::vector<Parameter*>& params) {
  const bool adam = config_.kind == "adam";
  if ((adam || config_.momentum > 0) && first_.size() != params.size()) {
    first_.clear(), second_.clear();
    for (Parameter* p : params) {
      first_.emplace_back(p->value().shape(), p->value().dtype());
      if (adam) second_.emplace_back(p->value().shape(), p->value().dtype());
    }
  }
}

void Optimizer::step(const std::vector<Parameter*>& params) {
  const bool adam = config_.kind == "adam";
  allocate_state(params);
  const double lr = current_lr();
  ++updates_;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor& w = params[i]->value();
    const Tensor& g = params[i]->grad();
    auto apply = [&]<class T>(T* wv, const T* gv) {
      const std::int64_t n = w.numel();
      if (adam) {
        // torch.optim.Adam: bias-corrected moments, eps outside the square root.
        T* m = first_[i].data<T>();
        T* v = second_[i].data<T>();
        const double c1 = 1 - std::pow(config_.beta1, static_cast<double>(updates_));
        const double c2 = 1 - std::pow(config_.beta2, static_cast<double>(updates_));
        const T b1 = static_cast<T>(config_.beta1), b2 = static_cast<T>(config_.beta2);
        const T step_size = static_cast<T>(lr / c1), root_c2 = static_cast<T>(std::sqrt(c2)),
                eps = static_cast<T>(config_.eps);
        for (std::int64_t k = 0; k < n; ++k) {
          m[k] = b1 * m[k] + (T(1) - b1) * gv[k];
          v[k] = b2 * v[k] + (T(1) - b2) * gv[k] * gv[k];
          wv[k] -= step_size * m[k] / (std::sqrt(v[k]) / root_c2 + eps);
        }
      } else if (config_.momentum > 0) {
        // torch.optim.SGD: buf = momentum * buf + g (buf = g on the first update), p -= lr * buf.
        T* buf = first_[i].data<T>();
        const T mu = updates_ == 1 ? T(0) : static_cast<T>(config_.momentum);
        for (std::int64_t k = 0; k < n; ++k) {
          buf[k] = mu * buf[k] + gv[k];
          wv[k] -= static_cast<T>(lr) * buf[k];
        }
      } else {
        for (std::int64_t k = 0; k < n; ++k) wv[k] -= static_cast<T>(lr) * gv[k];
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
    out.emplace_back(
        "optimizer." + params[i]->name() + (config_.kind == "adam" ? ".exp_avg" : ".momentum_buffer"),
        &first_[i]);
    if (i < second_.size()) out.emplace_back("optimizer." + params[i]->name() + ".exp_avg_sq", &second_[i]);
  }
  return out;
}

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  double total = 0;
  for (Parameter* p : params)
    for_each_element(p->grad(), [&](auto v) { total += static_cast<double>(v) * v; });
  const double norm = std::sqrt(total);
  if (norm > max_norm && norm > 0) {
    const double factor = max_norm / norm;
    for (Parameter* p : params)
      for_each_element(p->grad(),
                       [&](auto& v) { v = static_cast<std::remove_reference_t<decltype(v)>>(v * factor); });
  }
  return norm;
}

std::string first_nonfinite(const std::vector<Parameter*>& params) {
  // A non-finite value is the cause of non-finite gradients, so values are looked at first.
  for (Parameter* p : params) {
    bool bad = false;
    for_each_element(p->value(), [&](auto v) { bad = bad || !std::isfinite(v); });
    if (bad) return "parameter '" + p->name() + "' holds a non-finite value";
  }
  for (Parameter* p : params) {
    bool bad = false;
    for_each_element(p->grad(), [&](auto v) { bad = bad || !std::isfinite(v); });
    if (bad) return "the gradient of parameter '" + p->name() + "' is non-finite";
  }
  return {};
}

}  // namespace rwd::trainers
