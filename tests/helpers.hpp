// Shared test fixtures: deterministic random tensors and parameters.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "rewind/autodiff/tape.hpp"

namespace rwd::test {

// A fresh directory under the system's temporary one, removed with everything in it at the end of its scope.
struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("rewind_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return file(name);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

// Heap allocations of this test binary so far, and their bytes (counted in test_allocation.cpp).
std::size_t heap_allocations();
std::size_t heap_bytes();

// Uniform values in [lo, hi), optionally kept at least min_abs away from zero (for kinks like relu's).
inline autodiff::Tensor random_tensor(autodiff::Shape shape, autodiff::DType dtype, std::uint64_t seed,
                                      double lo = -1, double hi = 1, double min_abs = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  autodiff::Tensor t(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    double v = dist(rng);
    while (std::abs(v) < min_abs) v = dist(rng);
    t.set(i, v);
  }
  return t;
}

inline autodiff::Parameter random_parameter(const std::string& name, autodiff::Shape shape,
                                            std::uint64_t seed,
                                            autodiff::DType dtype = autodiff::DType::f64) {
  return autodiff::Parameter(name, random_tensor(shape, dtype, seed));
}

}  // namespace rwd::test
