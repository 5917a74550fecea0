// The optimisers and schedules of the training recipes (issue 11) against torch.optim's update rules written
// out element by element here: weight decay, AdamW, RMSprop, Nesterov momentum; the cosine schedule with
// warm-up. Three steps each, with a different gradient every step, in double.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <numbers>

#include "helpers.hpp"
#include "rewind/trainers/optim.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Parameter;
using autodiff::Shape;

namespace {

// One parameter of 5 elements; the reference keeps its own copy and its own state, element by element.
struct Run {
  Parameter p{"w", test::random_tensor(Shape::vector(5), DType::f64, 7)};
  std::vector<double> reference;
  Run() {
    for (std::int64_t k = 0; k < 5; ++k) reference.push_back(p.value().get(k));
  }
  double gradient(int t, std::int64_t k) const {
    return std::sin(1.3 * (t + 1) + 0.7 * static_cast<double>(k)) * 2;
  }
  // step(t, k, w, g) -> the reference's new w for element k at step t (0-based).
  void check(trainers::OptimizerConfig config,
             const std::function<double(int, std::int64_t, double, double)>& step) {
    trainers::Optimizer optimizer(config);
    for (int t = 0; t < 3; ++t) {
      for (std::int64_t k = 0; k < 5; ++k) p.grad().set(k, gradient(t, k));
      optimizer.step({&p});
      for (std::int64_t k = 0; k < 5; ++k) {
        reference[static_cast<std::size_t>(k)] =
            step(t, k, reference[static_cast<std::size_t>(k)], gradient(t, k));
        CHECK(p.value().get(k) == Approx(reference[static_cast<std::size_t>(k)]).epsilon(1e-12));
      }
    }
  }
};

}  // namespace

TEST_CASE("weight decay adds wd * p to the gradient of sgd, with and without (Nesterov) momentum",
          "[optim][recipes]") {
  const double lr = 0.1, wd = 0.05, mu = 0.9;
  {
    Run r;
    r.check({.kind = "sgd", .lr = lr, .weight_decay = wd},
            [&](int, std::int64_t, double w, double g) { return w - lr * (g + wd * w); });
  }
  for (bool nesterov : {false, true}) {
    Run r;
    std::vector<double> buf(5);
    r.check({.kind = "sgd", .lr = lr, .momentum = mu, .weight_decay = wd, .nesterov = nesterov},
            [&](int t, std::int64_t k, double w, double g) {
              const double d = g + wd * w;
              double& b = buf[static_cast<std::size_t>(k)];
              b = t == 0 ? d : mu * b + d;  // torch: the buffer starts as the first gradient
              return w - lr * (nesterov ? d + mu * b : b);
            });
  }
}

TEST_CASE("adam with L2 and adamw with decoupled decay follow torch.optim", "[optim][recipes]") {
  const double lr = 0.01, wd = 0.1, b1 = 0.8, b2 = 0.95, eps = 1e-3;
  for (const char* kind : {"adam", "adamw"}) {
    INFO(kind);
    const bool decoupled = std::string(kind) == "adamw";
    Run r;
    std::vector<double> m(5), v(5);
    r.check({.kind = kind, .lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd},
            [&](int t, std::int64_t k, double w, double g) {
              if (decoupled) w *= 1 - lr * wd;
              const double d = decoupled ? g : g + wd * w;
              double& mk = m[static_cast<std::size_t>(k)];
              double& vk = v[static_cast<std::size_t>(k)];
              mk = b1 * mk + (1 - b1) * d;
              vk = b2 * vk + (1 - b2) * d * d;
              const double c1 = 1 - std::pow(b1, t + 1), c2 = 1 - std::pow(b2, t + 1);
              return w - lr / c1 * mk / (std::sqrt(vk) / std::sqrt(c2) + eps);
            });
  }
}

TEST_CASE("rmsprop follows torch.optim.RMSprop", "[optim][recipes]") {
  const double lr = 0.01, alpha = 0.9, eps = 1e-3, wd = 0.02;
  Run r;
  std::vector<double> sq(5);
  r.check({.kind = "rmsprop", .lr = lr, .eps = eps, .weight_decay = wd, .alpha = alpha},
          [&](int, std::int64_t k, double w, double g) {
            const double d = g + wd * w;
            double& s = sq[static_cast<std::size_t>(k)];
            s = alpha * s + (1 - alpha) * d * d;
            return w - lr * d / (std::sqrt(s) + eps);
          });
}

TEST_CASE("the cosine schedule warms up linearly, then falls to lr_min at the update limit",
          "[optim][recipes]") {
  const double lr = 0.1, lr_min = 0.01;
  trainers::Optimizer o({.lr = lr, .schedule = "cosine", .warmup = 4, .lr_min = lr_min, .total_updates = 24});
  Parameter p("w", test::random_tensor(Shape::vector(2), DType::f64, 1));
  for (int u = 0; u < 30; ++u) {
    const double expected =
        u < 4
            ? lr * (u + 1) / 4.0
            : lr_min + (lr - lr_min) * 0.5 * (1 + std::cos(std::numbers::pi * std::min(1.0, (u - 4) / 20.0)));
    INFO("update index " << u);
    CHECK(o.current_lr() == Approx(expected).epsilon(1e-14));
    o.step({&p});
  }
}

TEST_CASE("optimiser and schedule settings that cannot work are refused", "[optim][recipes]") {
  using trainers::Optimizer;
  CHECK_THROWS_WITH(Optimizer({.kind = "lamb"}),
                    Catch::Contains("'lamb' is not sgd, adam, adamw or rmsprop"));
  CHECK_THROWS_WITH(Optimizer({.kind = "adam", .nesterov = true}),
                    Catch::Contains("nesterov needs sgd with a momentum"));
  CHECK_THROWS_WITH(Optimizer({.weight_decay = -1}), Catch::Contains("weight decay must be finite and >= 0"));
  CHECK_THROWS_WITH(Optimizer({.schedule = "linear"}), Catch::Contains("schedule 'linear'"));
  CHECK_THROWS_WITH(Optimizer({.schedule = "cosine", .warmup = 10, .total_updates = 10}),
                    Catch::Contains("needs an update limit"));
  CHECK_THROWS_WITH(Optimizer({.schedule = "step"}), Catch::Contains("needs a step interval"));
}

TEST_CASE("the plateau schedule follows torch's ReduceLROnPlateau and survives a checkpoint",
          "[optim][recipes]") {
  // torch.optim.lr_scheduler.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.2), mode min, threshold 1e-4
  // relative: a loss improves on the best when it is below best * (1 - 1e-4) (0.79995 does not improve on
  // 0.8, 0.7999 does); after more than `patience` evaluations without improvement the rate is multiplied by
  // the factor, not below min_lr, and the count starts again. The rates are torch's for these losses.
  const std::vector<std::pair<double, double>> loss_rate = {
      {1.0, 1.0},     {0.9, 1.0},  {0.95, 1.0},  {0.95, 1.0},    {0.95, 0.5},  {0.8, 0.5},
      {0.79995, 0.5}, {0.85, 0.5}, {0.85, 0.25}, {0.7999, 0.25}, {0.85, 0.25}, {0.85, 0.25},
      {0.85, 0.2},    {0.85, 0.2}, {0.85, 0.2},  {0.85, 0.2}};
  const trainers::OptimizerConfig config{
      .lr = 1.0, .gamma = 0.5, .schedule = "plateau", .lr_min = 0.2, .patience = 2};
  trainers::Optimizer o(config);
  std::size_t i = 0;
  for (; i < loss_rate.size(); ++i) {
    INFO("evaluation " << i << ", loss " << loss_rate[i].first);
    const double before = o.current_lr();
    const bool reduced = o.observe_validation(loss_rate[i].first);
    CHECK(reduced == (o.current_lr() < before));
    CHECK(o.current_lr() == loss_rate[i].second);
    if (i == 7) break;  // a checkpoint here: best 0.8, two evaluations without improvement
  }
  trainers::Optimizer resumed(config);
  resumed.restore_schedule_state(o.schedule_state());
  for (++i; i < loss_rate.size(); ++i) {
    INFO("evaluation " << i << " after the restore, loss " << loss_rate[i].first);
    resumed.observe_validation(loss_rate[i].first);
    CHECK(resumed.current_lr() == loss_rate[i].second);
  }
  std::map<std::string, std::string> broken = o.schedule_state();
  broken["rewind.plateau.bad"] = "two";
  CHECK_THROWS_WITH(resumed.restore_schedule_state(broken), Catch::Contains("plateau schedule's state"));
  broken.erase("rewind.plateau.best");
  CHECK_THROWS_WITH(resumed.restore_schedule_state(broken),
                    Catch::Contains("'rewind.plateau.best' is missing"));
  // Other schedules neither react to validation nor store anything.
  trainers::Optimizer constant({.lr = 1.0});
  CHECK_FALSE(constant.observe_validation(5.0));
  CHECK(constant.schedule_state().empty());
  CHECK_THROWS_WITH(trainers::Optimizer({.gamma = 1.0, .schedule = "plateau"}),
                    Catch::Contains("must be < 1"));
  CHECK_THROWS_WITH(trainers::Optimizer({.warmup = 3}), Catch::Contains("warm-up applies to the cosine"));
}
