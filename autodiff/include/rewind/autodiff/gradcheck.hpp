// Finite-difference gradient checking, for the library's ops and for users' own cells. See docs/gradcheck.md.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "rewind/autodiff/export.hpp"
#include "rewind/autodiff/tape.hpp"

namespace rwd::autodiff {

enum class GradcheckMode : std::uint8_t {
  automatic,      // full Jacobian when the output has at most full_jacobian_max_outputs elements, else vjp
  full_jacobian,  // every d output_j / d parameter_i, one backward per output element
  vjp,            // v^T J for random output directions v, one backward per probe
  // Forward mode: J v by Tape::jvp for random directions v of each parameter (vjp_probes of them), against
  // the central difference of f along v, and against reverse mode (<w, J v> = <J^T w, v> for a random w).
  forward,
};

struct GradcheckOptions {
  double eps = 1e-6;  // central difference step
  // An element passes when |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
  double atol = 1e-8;
  double rtol = 1e-6;
  GradcheckMode mode = GradcheckMode::automatic;
  std::int64_t full_jacobian_max_outputs = 32;
  int vjp_probes = 2;
  // Elements checked per parameter, chosen at random; 0 checks all (each costs two evaluations of f).
  std::int64_t max_elements_per_parameter = 0;
  std::uint64_t seed = 0x5eed;
};

struct GradcheckParameterResult {
  std::string name;
  std::int64_t elements_checked = 0;
  double max_abs_error = 0;
  double max_rel_error = 0;  // over elements where max(|analytic|, |numeric|) >= atol / rtol
  bool passed = true;
};

struct REWIND_AUTODIFF_EXPORT GradcheckReport {
  bool passed = true;
  GradcheckMode mode = GradcheckMode::automatic;  // the mode actually used
  std::vector<GradcheckParameterResult> parameters;
  double max_abs_error = 0;
  double max_rel_error = 0;
  // The element farthest outside (or closest to) the tolerance.
  std::string worst_parameter;
  std::int64_t worst_index = -1;   // flat index into the parameter
  std::int64_t worst_output = -1;  // output element (full Jacobian) or probe number (vjp)
  double worst_analytic = 0;
  double worst_numeric = 0;

  std::string summary() const;  // one line, naming the worst element
  std::string table() const;    // one line per parameter
};

// f records a computation on the given double-precision tape, reading the parameters with tape.param(),
// and returns its output. f is called many times and must be deterministic. Parameters must be f64; their
// values and gradients are restored before returning.
REWIND_AUTODIFF_EXPORT GradcheckReport gradcheck(const std::function<Var(Tape&)>& f,
                                                 std::span<Parameter* const> parameters,
                                                 const GradcheckOptions& options = {});

}  // namespace rwd::autodiff
