// compare_parameters A.safetensors B.safetensors TOLERANCE: exit 0 when both files hold the same tensors
// (names, shapes) and every element agrees to TOLERANCE relative to the largest magnitude of its tensor
// (0: bitwise); otherwise names the first tensor that does not and exits 1. The CLI tests' comparison of runs
// that must agree to rounding (one process against several MPI ranks).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "rewind/models/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: compare_parameters A.safetensors B.safetensors TOLERANCE\n");
    return 2;
  }
  try {
    const auto a = rwd::models::load_safetensors(argv[1]), b = rwd::models::load_safetensors(argv[2]);
    const double tolerance = std::atof(argv[3]);
    if (a.size() != b.size()) {
      std::printf("%zu tensors against %zu\n", a.size(), b.size());
      return 1;
    }
    double worst = 0;
    for (const auto& [name, x] : a) {
      const auto it = b.find(name);
      if (it == b.end() || it->second.shape() != x.shape()) {
        std::printf("'%s' is missing or has another shape in %s\n", name.c_str(), argv[2]);
        return 1;
      }
      double scale = 0, diff = 0;
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        scale = std::max(scale, std::abs(x.get(i)));
        diff = std::max(diff, std::abs(x.get(i) - it->second.get(i)));
      }
      const double relative = scale > 0 ? diff / scale : diff;
      worst = std::max(worst, relative);
      if (!(relative <= tolerance)) {
        std::printf("'%s' differs by %.3g relative (tolerance %.3g)\n", name.c_str(), relative, tolerance);
        return 1;
      }
    }
    std::printf("%zu tensors agree (largest relative difference %.3g)\n", a.size(), worst);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_parameters: %s\n", e.what());
    return 2;
  }
}
