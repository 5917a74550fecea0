// Bad input: every case throws a message naming the op and the shapes involved; nothing crashes.
#include <catch2/catch.hpp>
#include <cmath>

#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;
using Catch::Contains;

namespace {
Tensor zeros(std::int64_t r, std::int64_t c, DType t = DType::f32) {
  return Tensor(Shape::matrix(r, c), t);
}
}  // namespace

TEST_CASE("shape mismatches name the op and both shapes", "[errors]") {
  Tape tape;
  Var a = tape.input(zeros(3, 4), true);
  Var b = tape.input(zeros(2, 4), true);
  CHECK_THROWS_WITH(add(a, b), Contains("add: shapes [3, 4] and [2, 4] do not broadcast"));
  CHECK_THROWS_WITH(sub(a, tape.input(zeros(3, 5))), Contains("sub: shapes [3, 4] and [3, 5]"));
  CHECK_THROWS_WITH(mul(a, b), Contains("mul: shapes [3, 4] and [2, 4]"));
  CHECK_THROWS_WITH(matmul(a, b), Contains("matmul: inner dimensions differ: [3, 4] @ [2, 4]"));
  CHECK_THROWS_WITH(matmul(a, tape.input(zeros(2, 3)), Transpose::no, Transpose::yes),
                    Contains("[3, 4] @ [2, 3]^T"));
  CHECK_THROWS_WITH(matmul(a, tape.input(Tensor(Shape::vector(4), DType::f32))),
                    Contains("matmul: needs matrices, got [3, 4] and [4]"));
  CHECK_THROWS_WITH(slice_cols(a, 2, 6), Contains("slice_cols: columns [2, 6) of [3, 4]"));
  CHECK_THROWS_WITH(concat_cols({a, b}), Contains("concat_cols: part [2, 4] does not have the 3 rows"));
  CHECK_THROWS_WITH(mse(a, b), Contains("mse: shapes [3, 4] and [2, 4] differ"));
  CHECK_THROWS_WITH(mse(a, a, -1), Contains("mse: the normalizer must be finite and >= 0"));
  CHECK_THROWS_WITH(linear(a, tape.input(zeros(5, 3)), tape.input(Tensor(Shape::vector(5), DType::f32))),
                    Contains("linear: x [3, 4], weight [5, 3], bias [5] do not fit"));
  CHECK_THROWS_WITH(rnn_pointwise(a, b), Contains("rnn_pointwise: shapes [3, 4] and [2, 4] differ"));
  CHECK_THROWS_WITH(lstm_pointwise(a, a, tape.input(zeros(3, 2))),
                    Contains("lstm_pointwise: gi is [3, 4], expected [3, 8]"));
  CHECK_THROWS_WITH(gru_pointwise(a, a, tape.input(zeros(3, 2))),
                    Contains("gru_pointwise: gi is [3, 4], expected [3, 6]"));
  const std::int32_t bad_index[] = {0, 3};
  CHECK_THROWS_WITH(gather_rows(b, bad_index),
                    Contains("gather_rows: index 3 at position 1 is outside the 2 rows"));
  const std::int32_t two_targets[] = {0, 1};
  CHECK_THROWS_WITH(softmax_cross_entropy(a, two_targets),
                    Contains("softmax_cross_entropy: 2 targets for logits [3, 4]"));
  const std::int32_t bad_target[] = {0, 4, 1};
  CHECK_THROWS_WITH(softmax_cross_entropy(a, bad_target),
                    Contains("target 4 at row 1 is outside the 4 classes"));
}

TEST_CASE("backward on a consumed window is an error until the tape is cleared", "[errors]") {
  Tape tape;
  Var x = tape.input(zeros(2, 2), true);
  Var loss = sum(tanh(x));
  tape.backward(loss);
  CHECK(tape.consumed());
  CHECK_THROWS_WITH(tape.backward(loss), Contains("already backpropagated"));
  tape.clear();
  CHECK_THROWS_WITH(loss.shape(), Contains("tape was cleared"));
  CHECK_THROWS_WITH(tanh(loss),
                    Contains("tanh: an input is empty or belongs to a tape window that was cleared"));
  // After clear() the tape records and backpropagates again: d sum(tanh(x)) / dx = 1 - tanh(x)^2.
  Tensor values = zeros(2, 2);
  for (std::int64_t i = 0; i < 4; ++i) values.set(i, 0.25 * static_cast<double>(i) - 0.5);
  Var x2 = tape.input(values, true);
  tape.backward(sum(tanh(x2)));
  for (std::int64_t i = 0; i < 4; ++i)
    CHECK(tape.grad(x2).get(i) == Approx(1 - std::pow(std::tanh(values.get(i)), 2)).epsilon(1e-5));
}

TEST_CASE("backward from a non-scalar needs a seed of the same shape", "[errors]") {
  Tape tape;
  Tensor values = zeros(2, 3);
  for (std::int64_t i = 0; i < 6; ++i) values.set(i, 0.3 * static_cast<double>(i) - 0.8);
  Var x = tape.input(values, true);
  Var y = tanh(x);
  CHECK_THROWS_WITH(tape.backward(y),
                    Contains("tanh [2, 3]") && Contains("is not a scalar; pass a seed gradient"));
  const Tensor wrong = zeros(3, 3);
  const Seed bad{y, &wrong};
  CHECK_THROWS_WITH(tape.backward(std::span<const Seed>(&bad, 1)),
                    Contains("seed [3, 3] f32 does not match tanh [2, 3]"));
  // The same count in another shape is refused too: read as [2, 3] it would be another gradient.
  const Tensor transposed = zeros(3, 2);
  const Seed flipped{y, &transposed};
  CHECK_THROWS_WITH(tape.backward(std::span<const Seed>(&flipped, 1)),
                    Contains("seed [3, 2] f32 does not match tanh [2, 3]"));
  // A seed of the right shape is used as d loss / dy: dx = seed * (1 - tanh(x)^2).
  const Tensor seed = [] {
    Tensor t(Shape::matrix(2, 3), DType::f32);
    for (std::int64_t i = 0; i < 6; ++i) t.set(i, static_cast<double>(i + 1));
    return t;
  }();
  const Seed good{y, &seed};
  tape.backward(std::span<const Seed>(&good, 1));
  for (std::int64_t i = 0; i < 6; ++i)
    CHECK(tape.grad(x).get(i) ==
          Approx(seed.get(i) * (1 - std::pow(std::tanh(values.get(i)), 2))).epsilon(1e-5));
}

TEST_CASE("asking for a gradient that does not exist is an error", "[errors]") {
  Tape tape;
  Var constant = tape.input(zeros(2, 2));
  Var x = tape.input(zeros(2, 2), true);
  Var loss = sum(mul(constant, x));
  tape.backward(loss);
  CHECK_THROWS_WITH(tape.grad(constant), Contains("input [2, 2] (node #0) does not require a gradient"));
  CHECK_THROWS_WITH(tape.grad(loss),
                    Contains("sum [] (node #3) is an intermediate value; only leaves keep their gradients"));
  CHECK_THROWS_WITH(tape.backward(sum(exp(constant))), Contains("already backpropagated"));
  tape.clear();
  CHECK_THROWS_WITH(tape.backward(sum(exp(tape.input(zeros(1, 1))))),
                    Contains("sum [] (node #2) does not require a gradient"));
}

TEST_CASE("mixing dtypes or tapes is an error naming the parameter", "[errors]") {
  Tape f32_tape(DType::f32);
  Tape other(DType::f32);
  Parameter w("rnn.weight_hh_l0", zeros(2, 2, DType::f64));
  CHECK_THROWS_WITH(f32_tape.param(w),
                    Contains("parameter 'rnn.weight_hh_l0' is f64 but the tape records f32"));
  CHECK_THROWS_WITH(f32_tape.input(zeros(2, 2, DType::f64)),
                    Contains("a f64 tensor of shape [2, 2] given to a f32 tape"));
  Var a = f32_tape.input(zeros(2, 2));
  Var b = other.input(zeros(2, 2));
  CHECK_THROWS_WITH(add(a, b), Contains("add: inputs are recorded on different tapes"));
  CHECK_THROWS_WITH(tanh(Var{}), Contains("tanh: an input is empty"));
  CHECK_THROWS_WITH(a.values<double>(), Contains("requested f64 values of input [2, 2]"));
}
