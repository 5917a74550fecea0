#include "rewind/autodiff/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <stdexcept>

namespace rwd::autodiff {
namespace {

const char* name_of(GradcheckMode m) {
  switch (m) {
    case GradcheckMode::automatic:
      return "automatic";
    case GradcheckMode::full_jacobian:
      return "full Jacobian";
    case GradcheckMode::vjp:
      return "vector-Jacobian product";
    case GradcheckMode::forward:
      return "forward mode, Jacobian-vector product";
  }
  return "?";
}

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

// Evaluates f on a fresh window and returns its output values.
std::vector<double> evaluate(const std::function<Var(Tape&)>& f, Tape& tape) {
  tape.clear();
  NoGradGuard no_grad;
  const Var y = f(tape);
  const auto v = y.values<double>();
  return {v.begin(), v.end()};
}

std::vector<std::int64_t> chosen_elements(std::int64_t count, std::int64_t limit, std::mt19937_64& rng) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(count));
  std::iota(all.begin(), all.end(), 0);
  if (limit <= 0 || limit >= count) return all;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<std::size_t>(limit));
  std::sort(all.begin(), all.end());
  return all;
}

struct Scorer {
  const GradcheckOptions& options;
  GradcheckReport& report;
  double worst_ratio = -1;

  void score(GradcheckParameterResult& result, std::int64_t index, std::int64_t output, double analytic,
             double numeric) {
    const double abs_error = std::abs(analytic - numeric);
    const double magnitude = std::max(std::abs(analytic), std::abs(numeric));
    const double ratio = abs_error / (options.atol + options.rtol * magnitude);
    result.max_abs_error = std::max(result.max_abs_error, abs_error);
    if (magnitude >= options.atol / options.rtol)
      result.max_rel_error = std::max(result.max_rel_error, abs_error / magnitude);
    if (!(ratio <= 1.0)) result.passed = false;  // NaN fails too
    if (!(ratio <= worst_ratio)) {
      worst_ratio = std::isnan(ratio) ? INFINITY : ratio;
      report.worst_parameter = result.name;
      report.worst_index = index;
      report.worst_output = output;
      report.worst_analytic = analytic;
      report.worst_numeric = numeric;
    }
  }
};

std::vector<double> normal_values(std::int64_t count, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  std::vector<double> v(static_cast<std::size_t>(count));
  for (double& x : v) x = normal(rng);
  return v;
}

// Forward mode, parameter by parameter: J v against the central difference along v (index: the output
// element), and <w, J v> against <J^T w, v> (index -1).
void check_forward(const std::function<Var(Tape&)>& f, std::span<Parameter* const> parameters,
                   const GradcheckOptions& options, Tape& tape, std::mt19937_64& rng,
                   GradcheckReport& report) {
  Scorer scorer{options, report};
  for (Parameter* p : parameters) {
    GradcheckParameterResult result{p->name()};
    for (int probe = 0; probe < std::max(1, options.vjp_probes); ++probe) {
      const Tensor v = Tensor::from(normal_values(p->value().numel(), rng), p->value().shape(), DType::f64);
      for (Parameter* q : parameters) q->zero_grad();
      tape.clear();
      const Var y = f(tape);
      const Tangent direction{tape.param(*p), &v};
      const Tensor jv = tape.jvp(std::span<const Tangent>(&direction, 1), std::span<const Var>(&y, 1))[0];
      const Tensor w = Tensor::from(normal_values(y.shape().numel(), rng), y.shape(), DType::f64);
      const Seed seed{y, &w};
      tape.backward(std::span<const Seed>(&seed, 1));
      double w_jv = 0, jtw_v = 0;
      for (std::int64_t j = 0; j < jv.numel(); ++j) w_jv += w.get(j) * jv.get(j);
      for (std::int64_t i = 0; i < v.numel(); ++i) jtw_v += p->grad().get(i) * v.get(i);

      double* values = p->value().data<double>();
      const std::vector<double> original(values, values + p->value().numel());
      for (std::int64_t i = 0; i < v.numel(); ++i)
        values[i] = original[static_cast<std::size_t>(i)] + options.eps * v.get(i);
      const std::vector<double> plus = evaluate(f, tape);
      for (std::int64_t i = 0; i < v.numel(); ++i)
        values[i] = original[static_cast<std::size_t>(i)] - options.eps * v.get(i);
      const std::vector<double> minus = evaluate(f, tape);
      std::copy(original.begin(), original.end(), values);
      for (std::int64_t j = 0; j < jv.numel(); ++j) {
        const std::size_t k = static_cast<std::size_t>(j);
        scorer.score(result, j, probe, jv.get(j), (plus[k] - minus[k]) / (2 * options.eps));
      }
      scorer.score(result, -1, probe, w_jv, jtw_v);
      result.elements_checked += jv.numel() + 1;
    }
    report.passed = report.passed && result.passed;
    report.max_abs_error = std::max(report.max_abs_error, result.max_abs_error);
    report.max_rel_error = std::max(report.max_rel_error, result.max_rel_error);
    report.parameters.push_back(result);
  }
}

}  // namespace

GradcheckReport gradcheck(const std::function<Var(Tape&)>& f, std::span<Parameter* const> parameters,
                          const GradcheckOptions& options) {
  if (parameters.empty()) throw std::invalid_argument("gradcheck: no parameters to check");
  for (const Parameter* p : parameters)
    if (p->value().dtype() != DType::f64)
      throw std::invalid_argument("gradcheck: parameter '" + p->name() + "' is " +
                                  name_of(p->value().dtype()) + "; gradient checks run in f64");
  // Values and gradients go back as they were on every way out, exceptions included.
  struct Restore {
    std::span<Parameter* const> parameters;
    std::vector<Tensor> values, grads;
    ~Restore() {
      for (std::size_t i = 0; i < parameters.size(); ++i) {
        parameters[i]->value() = values[i];
        parameters[i]->grad() = grads[i];
      }
    }
  } restore{parameters, {}, {}};
  for (Parameter* p : parameters) restore.values.push_back(p->value()), restore.grads.push_back(p->grad());

  Tape tape(DType::f64);
  const std::vector<double> y0 = evaluate(f, tape);
  const auto outputs = static_cast<std::int64_t>(y0.size());
  GradcheckReport report;
  report.mode = options.mode;
  if (report.mode == GradcheckMode::automatic)
    report.mode =
        outputs <= options.full_jacobian_max_outputs ? GradcheckMode::full_jacobian : GradcheckMode::vjp;
  std::mt19937_64 rng(options.seed);
  if (report.mode == GradcheckMode::forward) {
    check_forward(f, parameters, options, tape, rng, report);
    tape.clear();
    return report;
  }

  // Output directions: unit vectors (rows of the Jacobian) or random probes.
  std::vector<std::vector<double>> directions;
  if (report.mode == GradcheckMode::full_jacobian) {
    for (std::int64_t j = 0; j < outputs; ++j) {
      directions.emplace_back(y0.size(), 0.0);
      directions.back()[static_cast<std::size_t>(j)] = 1.0;
    }
  } else {
    std::normal_distribution<double> normal;
    for (int p = 0; p < std::max(1, options.vjp_probes); ++p) {
      directions.emplace_back(y0.size());
      for (double& v : directions.back()) v = normal(rng);
    }
  }

  // Analytic: one backward per direction, collecting d(direction . y)/d parameter.
  std::vector<std::vector<Tensor>> analytic(directions.size());
  for (std::size_t d = 0; d < directions.size(); ++d) {
    for (Parameter* p : parameters) p->zero_grad();
    tape.clear();
    const Var y = f(tape);
    const Tensor seed = Tensor::from(directions[d], y.shape(), DType::f64);
    const Seed s{y, &seed};
    tape.backward(std::span<const Seed>(&s, 1));
    for (Parameter* p : parameters) analytic[d].push_back(p->grad());
  }

  Scorer scorer{options, report};
  for (std::size_t pi = 0; pi < parameters.size(); ++pi) {
    Parameter& p = *parameters[pi];
    GradcheckParameterResult result{p.name()};
    double* values = p.value().data<double>();
    for (std::int64_t i : chosen_elements(p.value().numel(), options.max_elements_per_parameter, rng)) {
      const double original = values[i];
      values[i] = original + options.eps;
      const std::vector<double> plus = evaluate(f, tape);
      values[i] = original - options.eps;
      const std::vector<double> minus = evaluate(f, tape);
      values[i] = original;
      for (std::size_t d = 0; d < directions.size(); ++d) {
        double numeric = 0;
        for (std::size_t j = 0; j < plus.size(); ++j) numeric += directions[d][j] * (plus[j] - minus[j]);
        numeric /= 2 * options.eps;
        scorer.score(result, i, static_cast<std::int64_t>(d), analytic[d][pi].get(i), numeric);
      }
      ++result.elements_checked;
    }
    report.passed = report.passed && result.passed;
    report.max_abs_error = std::max(report.max_abs_error, result.max_abs_error);
    report.max_rel_error = std::max(report.max_rel_error, result.max_rel_error);
    report.parameters.push_back(result);
  }
  tape.clear();
  return report;
}

std::string GradcheckReport::summary() const {
  std::string s = format("gradcheck %s (%s): max abs error %.3g, max rel error %.3g",
                         passed ? "passed" : "FAILED", name_of(mode), max_abs_error, max_rel_error);
  if (mode == GradcheckMode::forward && !worst_parameter.empty()) {
    s += worst_index >= 0
             ? format("; worst: (J v)[%lld] for %s (probe %lld) forward %.12g numeric %.12g",
                      static_cast<long long>(worst_index), worst_parameter.c_str(),
                      static_cast<long long>(worst_output), worst_analytic, worst_numeric)
             : format("; worst: <w, J v> %.12g against reverse mode's <J^T w, v> %.12g for %s (probe %lld)",
                      worst_analytic, worst_numeric, worst_parameter.c_str(),
                      static_cast<long long>(worst_output));
  } else if (worst_index >= 0) {
    s += format("; worst: %s[%lld] (%s %lld) analytic %.12g numeric %.12g", worst_parameter.c_str(),
                static_cast<long long>(worst_index), mode == GradcheckMode::vjp ? "probe" : "output",
                static_cast<long long>(worst_output), worst_analytic, worst_numeric);
  }
  return s;
}

std::string GradcheckReport::table() const {
  std::string s =
      format("%-28s %10s %12s %12s  %s\n", "parameter", "checked", "max abs err", "max rel err", "result");
  for (const GradcheckParameterResult& p : parameters)
    s +=
        format("%-28s %10lld %12.3g %12.3g  %s\n", p.name.c_str(), static_cast<long long>(p.elements_checked),
               p.max_abs_error, p.max_rel_error, p.passed ? "ok" : "FAILED");
  return s;
}

}  // namespace rwd::autodiff
