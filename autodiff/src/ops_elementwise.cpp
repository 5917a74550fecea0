// Elementwise ops, each forward next to its backward: binary ops over broadcast operands (elementwise.hpp
// holds the one broadcasting rule), where, ops with a constant, and unary functions.
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "elementwise.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::autodiff {
using namespace kernels;

// ---- binary ops with broadcasting ----------------------------------------------------------------------

namespace {

Var binary(Op op, const Var& a, const Var& b) {
  const std::array<Var, 2> inputs{a, b};
  Tape& tape = Recorder::tape_of(op, inputs);
  Node* na = a.node();
  Node* nb = b.node();
  const Shape s = broadcast_shape(op, na->shape, nb->shape);
  Node* n = Recorder::record(tape, op, s, inputs, true);
  const Operand oa = operand_in(na->shape, s), ob = operand_in(nb->shape, s);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* x = value_of<T>(na);
    const T* y = value_of<T>(nb);
    T* z = out_of<T>(n);
    switch (op) {
      case Op::add:
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u + v; });
        break;
      case Op::sub:
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u - v; });
        break;
      case Op::mul:
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u * v; });
        break;
      case Op::div:
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u / v; });
        break;
      case Op::maximum:  // a NaN on either side gives NaN, as torch.maximum
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u > v || std::isnan(u) ? u : v; });
        break;
      default:  // Op::minimum
        broadcast_apply(s, x, oa, y, ob, z, [](T u, T v) { return u < v || std::isnan(u) ? u : v; });
        break;
    }
  });
  return finish(tape, n);
}

// da += dy * d_a(a, b) and db += dy * d_b(a, b), each summed over the axes its operand was repeated along.
template <class T, class DA, class DB>
void backward_binary(Tape& tape, Node* n, DA d_a, DB d_b) {
  Node* na = n->inputs[0];
  Node* nb = n->inputs[1];
  const Operand oa = operand_in(na->shape, n->shape), ob = operand_in(nb->shape, n->shape);
  const T* dy = dy_of<T>(n);
  const T* a = value_of<T>(na);
  const T* b = value_of<T>(nb);
  if (T* ga = grad_in<T>(tape, n, 0)) broadcast_grad<0>(n->shape, ga, dy, a, oa, b, ob, d_a);
  if (T* gb = grad_in<T>(tape, n, 1)) broadcast_grad<1>(n->shape, gb, dy, a, oa, b, ob, d_b);
}

// ty = ta d_a(a, b) + tb d_b(a, b), each operand (and its tangent) read where it was broadcast from.
template <class T, class DA, class DB>
void jvp_binary(Tangents& t, Node* n, DA d_a, DB d_b) {
  Node* na = n->inputs[0];
  Node* nb = n->inputs[1];
  const Operand oa = operand_in(na->shape, n->shape), ob = operand_in(nb->shape, n->shape);
  const T *a = value_of<T>(na), *b = value_of<T>(nb), *ta = t.of<T>(na), *tb = t.of<T>(nb);
  T* ty = t.make<T>(n);
  for (std::int64_t r = 0; r < n->shape.rows; ++r)
    for (std::int64_t c = 0; c < n->shape.cols; ++c) {
      const std::int64_t i = r * oa.row + c * oa.col, j = r * ob.row + c * ob.col;
      T d = T(0);
      if (ta != nullptr) d += ta[i] * d_a(a[i], b[j]);
      if (tb != nullptr) d += tb[j] * d_b(a[i], b[j]);
      ty[r * n->shape.cols + c] = d;
    }
}

// Both rules of a binary op from derivatives_<name><T>(), the pair (dy/da, dy/db) as functions of (a, b).
#define REWIND_BINARY_RULES(name)                      \
  template <class T>                                   \
  void backward_##name(Tape& tape, Node* n) {          \
    const auto [d_a, d_b] = derivatives_##name<T>();   \
    backward_binary<T>(tape, n, d_a, d_b);             \
  }                                                    \
  template <class T>                                   \
  void jvp_##name(const Tape&, Tangents& t, Node* n) { \
    const auto [d_a, d_b] = derivatives_##name<T>();   \
    jvp_binary<T>(t, n, d_a, d_b);                     \
  }

// Both rules of a unary elementwise op from derivative_<name><T>(n), dy/dx as a function of (x, y).
#define REWIND_UNARY_RULES(name)                         \
  template <class T>                                     \
  void backward_##name(Tape& tape, Node* n) {            \
    backward_unary<T>(tape, n, derivative_##name<T>(n)); \
  }                                                      \
  template <class T>                                     \
  void jvp_##name(const Tape&, Tangents& t, Node* n) {   \
    jvp_unary<T>(t, n, derivative_##name<T>(n));         \
  }

}  // namespace

Var add(const Var& a, const Var& b) {
  return binary(Op::add, a, b);
}
template <class T>
auto derivatives_add() {
  return std::pair{[](T, T) { return T(1); }, [](T, T) { return T(1); }};
}
REWIND_BINARY_RULES(add)

Var sub(const Var& a, const Var& b) {
  return binary(Op::sub, a, b);
}
template <class T>
auto derivatives_sub() {
  return std::pair{[](T, T) { return T(1); }, [](T, T) { return T(-1); }};
}
REWIND_BINARY_RULES(sub)

Var mul(const Var& a, const Var& b) {
  return binary(Op::mul, a, b);
}
template <class T>
auto derivatives_mul() {
  return std::pair{[](T, T b) { return b; }, [](T a, T) { return a; }};
}
REWIND_BINARY_RULES(mul)

Var div(const Var& a, const Var& b) {
  return binary(Op::div, a, b);
}
template <class T>
auto derivatives_div() {
  return std::pair{[](T, T b) { return T(1) / b; }, [](T a, T b) { return -a / (b * b); }};
}
REWIND_BINARY_RULES(div)

Var maximum(const Var& a, const Var& b) {
  return binary(Op::maximum, a, b);
}
// The share of dy the winner of a comparison gets, as torch: all of it, half on a tie, none to the loser, and
// all of it to both sides when a NaN makes them unordered (torch masks only where the other side wins).
template <class T>
T winner_share(bool wins, bool loses, bool tie) {
  return wins ? T(1) : tie ? T(0.5) : loses ? T(0) : T(1);
}
template <class T>
auto derivatives_maximum() {
  return std::pair{[](T a, T b) { return winner_share<T>(a > b, a < b, a == b); },
                   [](T a, T b) { return winner_share<T>(b > a, b < a, a == b); }};
}
REWIND_BINARY_RULES(maximum)

Var minimum(const Var& a, const Var& b) {
  return binary(Op::minimum, a, b);
}
template <class T>
auto derivatives_minimum() {
  return std::pair{[](T a, T b) { return winner_share<T>(a<b, a> b, a == b); },
                   [](T a, T b) { return winner_share<T>(b<a, b> a, a == b); }};
}
REWIND_BINARY_RULES(minimum)

// ---- where ---------------------------------------------------------------------------------------------

// Three broadcast operands: the rule is applied to a and b, then to the mask and their result.
Var where(const Var& mask, const Var& a, const Var& b) {
  const std::array<Var, 3> inputs{mask, a, b};
  Tape& tape = Recorder::tape_of(Op::where, inputs);
  Node* nm = mask.node();
  Node* na = a.node();
  Node* nb = b.node();
  if (nm->requires_grad)
    fail(Op::where, "the mask " + nm->shape.str() +
                        " requires a gradient; pass a constant (Tape::input without requires_grad, or "
                        "stop_gradient of it)");
  const Shape s = broadcast_shape(Op::where, nm->shape, broadcast_shape(Op::where, na->shape, nb->shape));
  Node* n = Recorder::record(tape, Op::where, s, inputs, true);
  const Operand om = operand_in(nm->shape, s), oa = operand_in(na->shape, s), ob = operand_in(nb->shape, s);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* m = value_of<T>(nm);
    const T* x = value_of<T>(na);
    const T* y = value_of<T>(nb);
    T* z = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r)
      for (std::int64_t c = 0; c < s.cols; ++c)
        z[r * s.cols + c] =
            m[r * om.row + c * om.col] != T(0) ? x[r * oa.row + c * oa.col] : y[r * ob.row + c * ob.col];
  });
  return finish(tape, n);
}

template <class T>
void jvp_where(const Tape&, Tangents& t, Node* n) {
  const Shape s = n->shape;
  const Operand om = operand_in(n->inputs[0]->shape, s), oa = operand_in(n->inputs[1]->shape, s),
                ob = operand_in(n->inputs[2]->shape, s);
  const T *m = value_of<T>(n->inputs[0]), *ta = t.of<T>(n->inputs[1]), *tb = t.of<T>(n->inputs[2]);
  T* ty = t.make<T>(n);
  for (std::int64_t r = 0; r < s.rows; ++r)
    for (std::int64_t c = 0; c < s.cols; ++c) {
      // Chosen by the mask, not by comparing pointers: a and b may be views sharing one tangent buffer.
      const bool take_a = m[r * om.row + c * om.col] != T(0);
      const T* from = take_a ? ta : tb;
      const Operand o = take_a ? oa : ob;
      ty[r * s.cols + c] = from != nullptr ? from[r * o.row + c * o.col] : T(0);
    }
}
template <class T>
void backward_where(Tape& tape, Node* n) {
  const Shape s = n->shape;
  const Operand om = operand_in(n->inputs[0]->shape, s), oa = operand_in(n->inputs[1]->shape, s),
                ob = operand_in(n->inputs[2]->shape, s);
  const T* m = value_of<T>(n->inputs[0]);
  const T* dy = dy_of<T>(n);
  T* ga = grad_in<T>(tape, n, 1);
  T* gb = grad_in<T>(tape, n, 2);
  for (std::int64_t r = 0; r < s.rows; ++r)
    for (std::int64_t c = 0; c < s.cols; ++c) {
      const bool take_a = m[r * om.row + c * om.col] != T(0);
      const T g = dy[r * s.cols + c];
      if (ga != nullptr) ga[r * oa.row + c * oa.col] += take_a ? g : T(0);
      if (gb != nullptr) gb[r * ob.row + c * ob.col] += take_a ? T(0) : g;
    }
}

// ---- with a constant -----------------------------------------------------------------------------------

Var add_scalar(const Var& x, double c) {
  return unary(Op::add_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(v + c); });
}
template <class T>
void jvp_add_scalar(const Tape&, Tangents& t, Node* n) {
  std::copy_n(t.of<T>(n->inputs[0]), n->shape.numel(), t.make<T>(n));
}
template <class T>
void backward_add_scalar(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  add_into(gx, dy, n->shape.numel());
}

Var rsub_scalar(const Var& x, double c) {
  return unary(Op::rsub_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(c - v); });
}
template <class T>
void jvp_rsub_scalar(const Tape&, Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  for (std::int64_t i = 0; i < n->shape.numel(); ++i) ty[i] = -tx[i];
}
template <class T>
void backward_rsub_scalar(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const std::int64_t count = n->shape.numel();
  for (std::int64_t i = 0; i < count; ++i) gx[i] -= dy[i];
}

// Divided in double and rounded once (in float, the correctly rounded x / c); not x * (1 / c), whose 1 / c
// overflows for a subnormal c. c = 0 gives inf or NaN as x / 0.
Var div_scalar(const Var& x, double c) {
  return unary(Op::div_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(v / c); });
}
template <class T>
void jvp_div_scalar(const Tape&, Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  for (std::int64_t i = 0; i < n->shape.numel(); ++i) ty[i] = static_cast<T>(tx[i] / n->scalar);
}
template <class T>
void backward_div_scalar(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const double c = n->scalar;
  const std::int64_t count = n->shape.numel();
  for (std::int64_t i = 0; i < count; ++i) gx[i] += static_cast<T>(dy[i] / c);
}

Var rdiv_scalar(const Var& x, double c) {
  return unary(Op::rdiv_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(c / v); });
}
template <class T>
auto derivative_rdiv_scalar(const Node*) {
  return [](T x, T y) { return -y / x; };
}
REWIND_UNARY_RULES(rdiv_scalar)

Var scale(const Var& x, double c) {
  return unary(Op::scale, x, c, [c](auto v) { return static_cast<decltype(v)>(v * c); });
}
template <class T>
auto derivative_scale(const Node* n) {
  return [c = static_cast<T>(n->scalar)](T, T) { return c; };
}
REWIND_UNARY_RULES(scale)

Var neg(const Var& x) {
  return unary(Op::neg, x, 0, [](auto v) { return -v; });
}
template <class T>
auto derivative_neg(const Node*) {
  return [](T, T) { return T(-1); };
}
REWIND_UNARY_RULES(neg)

Var sigmoid(const Var& x) {
  return unary(Op::sigmoid, x, 0, [](auto v) { return kernels::sigmoid(v); });
}
template <class T>
auto derivative_sigmoid(const Node*) {
  return [](T, T y) { return y * (T(1) - y); };
}
REWIND_UNARY_RULES(sigmoid)

Var tanh(const Var& x) {
  return unary(Op::tanh, x, 0, [](auto v) { return kernels::tanh(v); });
}
template <class T>
auto derivative_tanh(const Node*) {
  return [](T, T y) { return T(1) - y * y; };
}
REWIND_UNARY_RULES(tanh)

Var relu(const Var& x) {
  return unary(Op::relu, x, 0, [](auto v) { return v > 0 ? v : decltype(v)(0); });
}
template <class T>
auto derivative_relu(const Node*) {
  return [](T, T y) { return y > 0 ? T(1) : T(0); };
}
REWIND_UNARY_RULES(relu)

Var exp(const Var& x) {
  return unary(Op::exp, x, 0, [](auto v) { return kernels::exp(v); });
}
template <class T>
auto derivative_exp(const Node*) {
  return [](T, T y) { return y; };
}
REWIND_UNARY_RULES(exp)

Var log(const Var& x) {
  return unary(Op::log, x, 0, [](auto v) { return std::log(v); });
}
template <class T>
auto derivative_log(const Node*) {
  return [](T x, T) { return T(1) / x; };
}
REWIND_UNARY_RULES(log)

// ---- powers and roots ----------------------------------------------------------------------------------

Var square(const Var& x) {
  return unary(Op::square, x, 0, [](auto v) { return v * v; });
}
template <class T>
auto derivative_square(const Node*) {
  return [](T x, T) { return T(2) * x; };
}
REWIND_UNARY_RULES(square)

Var pow(const Var& x, double p) {
  return unary(Op::pow, x, p, [p](auto v) { return static_cast<decltype(v)>(std::pow(v, p)); });
}
// p = 0: the constant 1, no gradient (torch gives 0 here too, even at x = 0): backward adds nothing at all,
// not dy * 0, which a non-finite dy would make NaN.
template <class T>
auto derivative_pow(const Node* n) {
  return [p = static_cast<T>(n->scalar)](T x, T) { return p == T(0) ? T(0) : p * std::pow(x, p - T(1)); };
}
template <class T>
void backward_pow(Tape& tape, Node* n) {
  if (n->scalar != 0) backward_unary<T>(tape, n, derivative_pow<T>(n));
}
template <class T>
void jvp_pow(const Tape&, Tangents& t, Node* n) {
  jvp_unary<T>(t, n, derivative_pow<T>(n));
}

Var sqrt(const Var& x) {
  return unary(Op::sqrt, x, 0, [](auto v) { return std::sqrt(v); });
}
template <class T>
auto derivative_sqrt(const Node*) {
  return [](T, T y) { return T(0.5) / y; };
}
REWIND_UNARY_RULES(sqrt)

Var rsqrt(const Var& x) {
  return unary(Op::rsqrt, x, 0, [](auto v) { return decltype(v)(1) / std::sqrt(v); });
}
template <class T>
auto derivative_rsqrt(const Node*) {
  return [](T, T y) { return T(-0.5) * y * y * y; };
}
REWIND_UNARY_RULES(rsqrt)

Var abs(const Var& x) {
  return unary(Op::abs, x, 0, [](auto v) { return std::fabs(v); });
}
template <class T>
auto derivative_abs(const Node*) {
  return [](T x, T) { return x > 0 ? T(1) : x < 0 ? T(-1) : T(0); };
}
REWIND_UNARY_RULES(abs)

// ---- smooth activations --------------------------------------------------------------------------------

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|): e^-|x| <= 1 never overflows, and for large |x| the log1p term
// vanishes (torch switches to x above 20; the two agree to rounding there).
Var softplus(const Var& x) {
  return unary(Op::softplus, x, 0, [](auto v) {
    using T = decltype(v);
    return (v > 0 ? v : T(0)) + std::log1p(std::exp(-std::fabs(v)));
  });
}
template <class T>
auto derivative_softplus(const Node*) {
  return [](T x, T) { return kernels::sigmoid(x); };
}
REWIND_UNARY_RULES(softplus)

// log sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(e^-|x|).
Var log_sigmoid(const Var& x) {
  return unary(Op::log_sigmoid, x, 0, [](auto v) {
    using T = decltype(v);
    return (v < 0 ? v : T(0)) - std::log1p(std::exp(-std::fabs(v)));
  });
}
template <class T>
auto derivative_log_sigmoid(const Node*) {
  return [](T x, T) { return kernels::sigmoid(-x); };
}
REWIND_UNARY_RULES(log_sigmoid)

namespace {
constexpr double sqrt_2_over_pi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double inv_sqrt_2 = 0.70710678118654752440;      // 1 / sqrt(2)
constexpr double inv_sqrt_2pi = 0.39894228040143267794;    // 1 / sqrt(2 pi)
constexpr double gelu_cubic = 0.044715;
}  // namespace

// x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, or with Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2.
Var gelu(const Var& x, GeluApproximation approximate) {
  Var y;
  if (approximate == GeluApproximation::tanh) {
    y = unary(Op::gelu, x, 0, [](auto v) {
      using T = decltype(v);
      const T inner = T(sqrt_2_over_pi) * (v + T(gelu_cubic) * v * v * v);
      return T(0.5) * v * (T(1) + std::tanh(inner));
    });
  } else {
    y = unary(Op::gelu, x, 0, [](auto v) {
      using T = decltype(v);
      return T(0.5) * v * (T(1) + std::erf(v * T(inv_sqrt_2)));
    });
  }
  y.node()->arg0 = approximate == GeluApproximation::tanh;
  return y;
}
template <class T>
auto derivative_gelu(const Node* n) {
  return [tanh_form = n->arg0 != 0](T x, T) {
    if (tanh_form) {
      const T t = std::tanh(T(sqrt_2_over_pi) * (x + T(gelu_cubic) * x * x * x));
      const T inner_dx = T(sqrt_2_over_pi) * (T(1) + T(3 * gelu_cubic) * x * x);
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * inner_dx;
    }
    const T cdf = T(0.5) * (T(1) + std::erf(x * T(inv_sqrt_2)));
    return cdf + x * T(inv_sqrt_2pi) * std::exp(T(-0.5) * x * x);
  };
}
REWIND_UNARY_RULES(gelu)

Var elu(const Var& x, double alpha) {
  return unary(Op::elu, x, alpha, [alpha](auto v) {
    using T = decltype(v);
    return v > 0 ? v : static_cast<T>(alpha) * std::expm1(v);
  });
}
template <class T>
auto derivative_elu(const Node* n) {
  return [alpha = static_cast<T>(n->scalar)](T x, T) { return x > 0 ? T(1) : alpha * std::exp(x); };
}
REWIND_UNARY_RULES(elu)

Var leaky_relu(const Var& x, double slope) {
  return unary(Op::leaky_relu, x, slope, [slope](auto v) {
    using T = decltype(v);
    return v > 0 ? v : static_cast<T>(slope) * v;
  });
}
template <class T>
auto derivative_leaky_relu(const Node* n) {
  return [slope = static_cast<T>(n->scalar)](T x, T) { return x > 0 ? T(1) : slope; };
}
REWIND_UNARY_RULES(leaky_relu)

// A NaN x stays NaN. Backward needs neither bound: x lies in [lo, hi] exactly where clamping left it alone.
Var clamp(const Var& x, double lo, double hi) {
  Recorder::tape_of(Op::clamp, std::span<const Var>(&x, 1));  // an invalid x is reported as such first
  if (!(lo <= hi))
    fail(Op::clamp,
         "lo " + std::to_string(lo) + " is not <= hi " + std::to_string(hi) + " for x " + x.shape().str());
  return unary(Op::clamp, x, lo, [lo, hi](auto v) {
    using T = decltype(v);
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    return v < l ? l : v > h ? h : v;
  });
}
template <class T>
auto derivative_clamp(const Node*) {
  return [](T x, T y) { return x == y ? T(1) : T(0); };
}
REWIND_UNARY_RULES(clamp)

REWIND_INSTANTIATE_RULES(add)
REWIND_INSTANTIATE_RULES(sub)
REWIND_INSTANTIATE_RULES(mul)
REWIND_INSTANTIATE_RULES(div)
REWIND_INSTANTIATE_RULES(maximum)
REWIND_INSTANTIATE_RULES(minimum)
REWIND_INSTANTIATE_RULES(where)
REWIND_INSTANTIATE_RULES(add_scalar)
REWIND_INSTANTIATE_RULES(rsub_scalar)
REWIND_INSTANTIATE_RULES(rdiv_scalar)
REWIND_INSTANTIATE_RULES(div_scalar)
REWIND_INSTANTIATE_RULES(scale)
REWIND_INSTANTIATE_RULES(neg)
REWIND_INSTANTIATE_RULES(sigmoid)
REWIND_INSTANTIATE_RULES(tanh)
REWIND_INSTANTIATE_RULES(relu)
REWIND_INSTANTIATE_RULES(exp)
REWIND_INSTANTIATE_RULES(log)
REWIND_INSTANTIATE_RULES(square)
REWIND_INSTANTIATE_RULES(pow)
REWIND_INSTANTIATE_RULES(sqrt)
REWIND_INSTANTIATE_RULES(rsqrt)
REWIND_INSTANTIATE_RULES(abs)
REWIND_INSTANTIATE_RULES(softplus)
REWIND_INSTANTIATE_RULES(log_sigmoid)
REWIND_INSTANTIATE_RULES(gelu)
REWIND_INSTANTIATE_RULES(elu)
REWIND_INSTANTIATE_RULES(leaky_relu)
REWIND_INSTANTIATE_RULES(clamp)

}  // namespace rwd::autodiff
