// The influence balancing task (tests/influence_balancing.hpp): theta after training with each trainer
// plugin (truncated at several k, ARTBP, full, RTRL, UORO), against theta* = 1 / (2p - n): theta after 10% of
// the updates, its mean and spread (sampled every 1% of the updates) over the second half, and the mean loss
// of the last 10%. Usage: influence_balancing [updates] [lr]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "influence_balancing.hpp"

using namespace rwd::test::influence;

int main(int argc, char** argv) {
  const std::int64_t updates = argc > 1 ? std::atoll(argv[1]) : 4000;
  const double lr = argc > 2 ? std::atof(argv[2]) : 0.002;
  const Task task;
  std::printf("n = %lld units, p = %lld positive, theta* = %.4f; SGD lr %g, %lld updates\n",
              static_cast<long long>(task.units), static_cast<long long>(task.positive), task.theta_star(),
              lr, static_cast<long long>(updates));
  std::printf("%-22s %11s %14s %10s %14s\n", "trainer", "theta@10%", "theta, 2nd half", "(sd)",
              "loss, last 10%");
  auto row = [&](const std::string& label, const std::string& trainer,
                 const std::map<std::string, std::string>& options, std::int64_t pass_steps) {
    const std::int64_t every = updates / 100;
    const auto points = train(task, trainer, options, lr, updates, every, pass_steps);
    std::printf("%-22s %11.4g", label.c_str(), points[std::min<std::size_t>(9, points.size() - 1)].theta);
    if (points.size() < 100) {
      std::printf("   ran away: |theta| > 100 |theta*| after %lld updates\n",
                  static_cast<long long>(points.back().update));
      return;
    }
    double mean = 0, squares = 0;
    for (std::size_t i = 50; i < 100; ++i)
      mean += points[i].theta / 50, squares += points[i].theta * points[i].theta / 50;
    double last = 0;
    for (std::size_t i = 90; i < 100; ++i) last += points[i].loss / 10;
    std::printf(" %14.5f %10.1e %14.3g\n", mean, std::sqrt(std::max(0.0, squares - mean * mean)), last);
  };
  for (int k : {1, 2, 4, 6, 8, 10, 12})
    row("truncated(" + std::to_string(k) + ")", "truncated", {{"k", std::to_string(k)}}, 2000);
  for (int k2 : {5, 10, 15})
    row("truncated(1, " + std::to_string(k2) + ")", "truncated", {{"k1", "1"}, {"k2", std::to_string(k2)}},
        2000);
  for (const char* c : {"0.1", "0.2", "0.3"})
    for (const char* seed : {"1", "2"})
      row(std::string("artbp(c ") + c + ", seed " + seed + ")", "artbp", {{"c", c}, {"seed", seed}}, 2000);
  row("full(passes of 200)", "full", {}, 200);
  row("rtrl (k 1)", "rtrl", {}, 2000);
  for (const char* seed : {"1", "2", "3"})
    row(std::string("uoro (k 1, seed ") + seed + ")", "uoro", {{"seed", seed}}, 2000);
}
