// What every zoo cell shares: PyTorch's default recurrent initialisation, U(-1/sqrt(H), 1/sqrt(H)).
#pragma once

#include <cmath>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace zoo {

using namespace rwd::autodiff;
using rwd::models::Cell;
using rwd::models::CellSpec;
using rwd::models::State;

inline Parameter param(const CellSpec& s, const std::string& name, Shape shape) {
  return Parameter(s.name(name), s.initializer->uniform(shape, s.dtype,
                                                        1.0 / std::sqrt(static_cast<double>(s.hidden_size))));
}

// x W^T: every cell's input and recurrent projections.
inline Var linear(Tape& t, const Var& x, Parameter& w) {
  return matmul(x, t.param(w), Transpose::no, Transpose::yes);
}

}  // namespace zoo
