// One finite-difference gradient check (double precision) per row of ops.def. The table below must have a
// case for every op: a new row in ops.def without one fails "every op in the table has a gradient check".
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <vector>

#include "helpers.hpp"
#include "rewind/autodiff/gradcheck.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;

namespace {

struct OpCase {
  std::string label;
  std::vector<Shape> inputs;  // each becomes a checked f64 parameter
  std::function<Var(std::vector<Var>&)> build;
  double lo = -1, hi = 1, min_abs = 0;  // input value range
};

Shape m(std::int64_t r, std::int64_t c) {
  return Shape::matrix(r, c);
}

std::map<Op, std::vector<OpCase>> op_cases() {
  std::map<Op, std::vector<OpCase>> cases;
  // Every broadcast the one rule allows, on both sides (kernels::broadcast_shape).
  auto binary = [&](Op op, Var (*f)(const Var&, const Var&), double lo = -1, double hi = 1) {
    auto fn = [f](std::vector<Var>& v) { return f(v[0], v[1]); };
    cases[op] = {{"same shape", {m(3, 4), m(3, 4)}, fn, lo, hi},
                 {"row bias on the right", {m(3, 4), m(1, 4)}, fn, lo, hi},
                 {"rank-1 bias on the right", {m(3, 4), Shape::vector(4)}, fn, lo, hi},
                 {"row broadcast on the left", {m(1, 4), m(3, 4)}, fn, lo, hi},
                 {"column broadcast on the right", {m(3, 4), m(3, 1)}, fn, lo, hi},
                 {"column broadcast on the left", {m(3, 1), m(3, 4)}, fn, lo, hi},
                 {"column by row", {m(3, 1), m(1, 4)}, fn, lo, hi},
                 {"scalar on the right", {m(3, 4), Shape::scalar()}, fn, lo, hi},
                 {"one column by a rank-1 row", {m(3, 1), Shape::vector(2)}, fn, lo, hi}};
  };
  binary(Op::add, add);
  binary(Op::sub, sub);
  binary(Op::mul, mul);
  binary(Op::div, div, 0.5, 2);
  binary(Op::maximum, maximum);  // ties are measure-zero here; tests/test_ops_values.cpp checks them
  binary(Op::minimum, minimum);
  cases[Op::scale] = {{"by -1.7", {m(3, 4)}, [](auto& v) { return scale(v[0], -1.7); }}};
  cases[Op::neg] = {{"matrix", {m(2, 3)}, [](auto& v) { return neg(v[0]); }}};
  cases[Op::matmul] = {{"a b", {m(3, 5), m(5, 2)}, [](auto& v) { return matmul(v[0], v[1]); }},
                       {"a^T b",
                        {m(5, 3), m(5, 2)},
                        [](auto& v) { return matmul(v[0], v[1], Transpose::yes, Transpose::no); }},
                       {"a b^T",
                        {m(3, 5), m(2, 5)},
                        [](auto& v) { return matmul(v[0], v[1], Transpose::no, Transpose::yes); }},
                       {"a^T b^T", {m(5, 3), m(2, 5)}, [](auto& v) {
                          return matmul(v[0], v[1], Transpose::yes, Transpose::yes);
                        }}};
  cases[Op::sigmoid] = {{"wide range", {m(3, 4)}, [](auto& v) { return sigmoid(v[0]); }, -6, 6}};
  cases[Op::tanh] = {{"wide range", {m(3, 4)}, [](auto& v) { return tanh(v[0]); }, -3, 3}};
  cases[Op::relu] = {{"away from the kink", {m(3, 4)}, [](auto& v) { return relu(v[0]); }, -1, 1, 0.05}};
  cases[Op::exp] = {{"matrix", {m(3, 4)}, [](auto& v) { return exp(v[0]); }}};
  cases[Op::log] = {{"positive inputs", {m(3, 4)}, [](auto& v) { return log(v[0]); }, 0.2, 3}};
  cases[Op::sum] = {{"matrix", {m(3, 4)}, [](auto& v) { return sum(v[0]); }}};
  cases[Op::mean] = {{"matrix", {m(3, 4)}, [](auto& v) { return mean(v[0]); }}};
  cases[Op::slice_cols] = {{"middle columns", {m(3, 6)}, [](auto& v) { return slice_cols(v[0], 1, 4); }},
                           {"rank-1", {Shape::vector(5)}, [](auto& v) { return slice_cols(v[0], 0, 2); }}};
  cases[Op::concat_cols] = {{"three parts",
                             {m(3, 2), m(3, 1), m(3, 3)},
                             [](auto& v) {
                               return concat_cols({v[0], v[1], v[2]});
                             }},
                            {"two parts, one used twice", {m(2, 2), m(2, 3)}, [](auto& v) {
                               return concat_cols({v[0], v[1], v[0]});
                             }}};
  // Views share their input's gradient buffer: overlapping views and the viewed tensor itself all add into
  // it.
  cases[Op::slice_rows] = {{"overlapping views and the whole", {m(5, 3)}, [](auto& v) {
                              return concat_cols({slice_rows(v[0], 1, 4), tanh(slice_rows(v[0], 0, 3)),
                                                  slice_rows(exp(v[0]), 2, 5),
                                                  slice_rows(v[0] * v[0], 0, 3)});
                            }}};
  cases[Op::concat_rows] = {{"three parts, one used twice", {m(2, 3), m(1, 3)}, [](auto& v) {
                               const Var parts[] = {v[0], v[1], v[0]};
                               return concat_rows(parts);
                             }}};
  cases[Op::gather_rows] = {{"repeated rows", {m(5, 3)}, [](auto& v) {
                               const std::int32_t idx[] = {4, 0, 4, 2};
                               return gather_rows(v[0], idx);
                             }}};
  cases[Op::softmax_cross_entropy] = {{"mean with an ignored row",
                                       {m(4, 5)},
                                       [](auto& v) {
                                         const std::int32_t targets[] = {1, -1, 4, 0};
                                         return softmax_cross_entropy(v[0], targets);
                                       },
                                       -3,
                                       3},
                                      {"explicit normalizer", {m(3, 4)}, [](auto& v) {
                                         const std::int32_t targets[] = {3, 0, 2};
                                         return softmax_cross_entropy(
                                             v[0], targets, {.ignore_index = -1, .normalizer = 7.0});
                                       }}};
  cases[Op::linear_cross_entropy] = {{"mean with an ignored row",
                                      {m(4, 3), m(5, 3), Shape::vector(5)},
                                      [](auto& v) {
                                        const std::int32_t targets[] = {1, -1, 4, 0};
                                        return linear_cross_entropy(v[0], v[1], v[2], targets);
                                      },
                                      -2,
                                      2}};
  cases[Op::mse] = {{"both sides", {m(3, 4), m(3, 4)}, [](auto& v) { return mse(v[0], v[1]); }},
                    {"normalizer", {m(3, 4), m(3, 4)}, [](auto& v) { return mse(v[0], v[1], 7.0); }}};
  // stop_gradient's numeric derivative is not zero, so it is checked as part of a function whose other path
  // must still be exact; its own cut is asserted to be exactly zero in test_tape.cpp.
  cases[Op::stop_gradient] = {{"the other path stays exact", {m(3, 4)}, [](auto& v) {
                                 return mul(tanh(v[0]), stop_gradient(v[0])) + stop_gradient(exp(v[0]));
                               }}};

  // ---- the primitives custom cells need
  // --------------------------------------------------------------------
  cases[Op::where] = {{"mask broadcast over rows, a column, a matrix",
                       {m(3, 1), m(3, 4)},
                       [](auto& v) {
                         const Tensor mask = Tensor::from({1, 0, 0, 1}, Shape::vector(4), DType::f64);
                         return where(v[0].tape().input(mask), v[0], v[1]);
                       }},
                      {"a full mask, the same input on both sides",
                       {m(2, 3)},
                       [](auto& v) {
                         const Tensor mask = Tensor::from({1, 0, 1, 0, 0, 1}, m(2, 3), DType::f64);
                         return where(v[0].tape().input(mask), tanh(v[0]), v[0] * v[0]);
                       }},
                      // A row view broadcast against its own tensor: both sides' tangents share one buffer.
                      {"a row view of the other side", {m(3, 4)}, [](auto& v) {
                         const Tensor mask = Tensor::from({1, 0, 0}, m(3, 1), DType::f64);
                         return where(v[0].tape().input(mask), slice_rows(v[0], 0, 1), v[0]);
                       }}};
  cases[Op::add_scalar] = {{"x + 0.3, 2 + x, x - 1", {m(3, 4)}, [](auto& v) {
                              return mul(v[0] + 0.3, 2.0 + v[0]) + (v[0] - 1.0);
                            }}};
  cases[Op::rsub_scalar] = {{"1.5 - x", {m(3, 4)}, [](auto& v) { return mul(1.5 - v[0], v[0]); }}};
  cases[Op::rdiv_scalar] = {
      {"2 / x, x / 4", {m(3, 4)}, [](auto& v) { return 2.0 / v[0] + v[0] / 4.0; }, 0.5, 2}};
  cases[Op::div_scalar] = {
      {"x / 4, x / -0.3", {m(3, 4)}, [](auto& v) { return mul(v[0] / 4.0, v[0] / -0.3); }}};
  cases[Op::square] = {{"matrix", {m(3, 4)}, [](auto& v) { return square(v[0]); }}};
  cases[Op::pow] = {{"x^2.5 of positive x", {m(3, 4)}, [](auto& v) { return pow(v[0], 2.5); }, 0.2, 2},
                    {"x^3 of any sign", {m(3, 4)}, [](auto& v) { return pow(v[0], 3.0); }},
                    {"x^-1.5", {m(2, 3)}, [](auto& v) { return pow(v[0], -1.5); }, 0.5, 2},
                    {"x^0", {m(2, 3)}, [](auto& v) { return pow(v[0], 0.0) * v[0]; }}};
  cases[Op::sqrt] = {{"positive inputs", {m(3, 4)}, [](auto& v) { return sqrt(v[0]); }, 0.2, 3}};
  cases[Op::rsqrt] = {{"positive inputs", {m(3, 4)}, [](auto& v) { return rsqrt(v[0]); }, 0.2, 3}};
  cases[Op::abs] = {{"away from 0", {m(3, 4)}, [](auto& v) { return abs(v[0]); }, -1, 1, 0.05}};
  cases[Op::softplus] = {{"wide range", {m(3, 4)}, [](auto& v) { return softplus(v[0]); }, -25, 25}};
  cases[Op::log_sigmoid] = {{"wide range", {m(3, 4)}, [](auto& v) { return log_sigmoid(v[0]); }, -25, 25}};
  cases[Op::gelu] = {
      {"exact (erf)", {m(3, 4)}, [](auto& v) { return gelu(v[0]); }, -4, 4},
      {"tanh approximation", {m(3, 4)}, [](auto& v) { return gelu(v[0], GeluApproximation::tanh); }, -4, 4}};
  cases[Op::elu] = {{"alpha 1", {m(3, 4)}, [](auto& v) { return elu(v[0]); }, -3, 3, 0.05},
                    {"alpha 0.7", {m(3, 4)}, [](auto& v) { return elu(v[0], 0.7); }, -3, 3, 0.05}};
  cases[Op::leaky_relu] = {
      {"slope 0.01", {m(3, 4)}, [](auto& v) { return leaky_relu(v[0]); }, -1, 1, 0.05},
      {"slope 0.2", {m(3, 4)}, [](auto& v) { return leaky_relu(v[0], 0.2); }, -1, 1, 0.05}};
  // Inputs in [-1, 1] around bounds +-0.5: some clamped, some not (none within eps of a bound).
  cases[Op::clamp] = {{"[-0.5, 0.5]", {m(4, 5)}, [](auto& v) { return clamp(v[0], -0.5, 0.5); }}};
  cases[Op::sum_cols] = {
      {"matrix", {m(3, 4)}, [](auto& v) { return sum_cols(v[0]); }},
      {"broadcast back over the columns", {m(3, 4)}, [](auto& v) { return v[0] * sum_cols(v[0]); }}};
  cases[Op::mean_cols] = {{"centred", {m(3, 4)}, [](auto& v) { return v[0] - mean_cols(v[0]); }}};
  cases[Op::max_cols] = {{"matrix", {m(4, 5)}, [](auto& v) { return max_cols(v[0]); }}};
  cases[Op::logsumexp_cols] = {{"matrix", {m(3, 4)}, [](auto& v) { return logsumexp_cols(v[0]); }, -3, 3}};
  cases[Op::sum_rows] = {{"matrix", {m(3, 4)}, [](auto& v) { return sum_rows(v[0]); }}};
  cases[Op::mean_rows] = {{"centred", {m(3, 4)}, [](auto& v) { return v[0] - mean_rows(v[0]); }}};
  cases[Op::softmax] = {{"rows", {m(3, 4)}, [](auto& v) { return softmax(v[0]); }, -3, 3}};
  cases[Op::log_softmax] = {{"rows", {m(3, 4)}, [](auto& v) { return log_softmax(v[0]); }, -3, 3}};
  cases[Op::transpose] = {
      {"x^T y", {m(3, 4), m(3, 2)}, [](auto& v) { return matmul(transpose(v[0]), v[1]); }}};
  // Views share their input's gradient buffer: views of views, views of row views and the viewed tensor
  // itself all add into it.
  cases[Op::reshape] = {{"views of views and the whole", {m(4, 3)}, [](auto& v) {
                           const Var wide = reshape(reshape(v[0], Shape::vector(12)), m(2, 6));
                           const Var of_rows = reshape(slice_rows(v[0], 1, 3), m(1, 6));
                           const Var rows_of = slice_rows(wide, 1, 2);
                           const Var both = reshape(concat_rows(std::vector<Var>{of_rows, rows_of}), m(4, 3));
                           return concat_cols({reshape(tanh(wide), m(4, 3)), v[0] * v[0], both});
                         }}};
  cases[Op::layer_norm] = {{"rows of 5",
                            {m(3, 5), Shape::vector(5), Shape::vector(5)},
                            [](auto& v) { return layer_norm(v[0], v[1], v[2]); },
                            -2,
                            2},
                           {"one rank-1 row, eps 0.1",
                            {Shape::vector(4), Shape::vector(4), Shape::vector(4)},
                            [](auto& v) { return layer_norm(v[0], v[1], v[2], 0.1); }}};
  cases[Op::linear] = {
      {"x w^T + b", {m(3, 4), m(5, 4), Shape::vector(5)}, [](auto& v) { return linear(v[0], v[1], v[2]); }}};
  cases[Op::rnn_pointwise] = {
      {"tanh(a + b)", {m(3, 4), m(3, 4)}, [](auto& v) { return rnn_pointwise(v[0], v[1]); }, -2, 2}};
  cases[Op::lstm_pointwise] = {{"batch 2, hidden 3",
                                {m(2, 12), m(2, 12), m(2, 3)},
                                [](auto& v) { return lstm_pointwise(v[0], v[1], v[2]); },
                                -2,
                                2}};
  cases[Op::gru_pointwise] = {{"batch 2, hidden 3",
                               {m(2, 9), m(2, 9), m(2, 3)},
                               [](auto& v) { return gru_pointwise(v[0], v[1], v[2]); },
                               -2,
                               2}};
  // value_dead ops feeding a sequence, which writes their gradient over their value (grad_over_value):
  // directly, and through a reshape view. (Debug builds poison the value instead, so an op wrongly marked
  // value_dead reads NaN there.)
  auto into_sequence = [](const Var& x, std::vector<Var>& v, std::size_t first) {
    const Var y =
        lstm_sequence(x, v[first], v[first + 1], v[first + 2], v[first + 3], v[first + 4], v[first + 5]);
    return tanh(y);
  };
  const std::vector<Shape> lstm_shapes{m(2, 2), m(2, 2),          m(8, 3),
                                       m(8, 2), Shape::vector(8), Shape::vector(8)};
  auto with_lstm = [&](std::vector<Shape> shapes) {
    shapes.insert(shapes.end(), lstm_shapes.begin(), lstm_shapes.end());
    return shapes;
  };
  cases[Op::layer_norm].push_back(
      {"into lstm_sequence", with_lstm({m(6, 3), Shape::vector(3), Shape::vector(3)}),
       [into_sequence](auto& v) { return into_sequence(layer_norm(v[0], v[1], v[2]), v, 3); }, -1.5, 1.5});
  cases[Op::transpose].push_back(
      {"through a reshape into lstm_sequence", with_lstm({m(2, 9)}),
       [into_sequence](auto& v) { return into_sequence(reshape(transpose(v[0]), m(6, 3)), v, 1); }, -1.5,
       1.5});
  cases[Op::sum_cols].push_back(
      {"into lstm_sequence", with_lstm({m(6, 3)}),
       [into_sequence](auto& v) { return into_sequence(v[0] * sum_cols(v[0]) + 0.5, v, 1); }, -1.5, 1.5});

  // Sequences: 3 steps, batch 2, input 3, hidden 2; with and without rows that restart mid-window (step 1 row
  // 0, step 2 row 1) and at step 0.
  static const std::uint8_t resets[] = {1, 0, 1, 0, 0, 1};
  const std::int64_t hid = 2;
  auto sequence_cases = [&](Op op, std::int64_t gates, auto run) {
    std::vector<Shape> shapes{m(6, 3), m(2, hid)};
    if (op == Op::lstm_sequence) shapes.push_back(m(2, hid));
    for (Shape s :
         {m(gates * hid, 3), m(gates * hid, hid), Shape::vector(gates * hid), Shape::vector(gates * hid)})
      shapes.push_back(s);
    cases[op] = {
        {"3 steps", shapes, [run](auto& v) { return run(v, std::span<const std::uint8_t>{}); }, -1.5, 1.5},
        {"3 steps with resets", shapes, [run](auto& v) { return run(v, std::span(resets)); }, -1.5, 1.5}};
  };
  sequence_cases(Op::rnn_sequence, 1, [](std::vector<Var>& v, std::span<const std::uint8_t> r) {
    return rnn_sequence(v[0], v[1], v[2], v[3], v[4], v[5], r);
  });
  sequence_cases(Op::lstm_sequence, 4, [](std::vector<Var>& v, std::span<const std::uint8_t> r) {
    return lstm_sequence(v[0], v[1], v[2], v[3], v[4], v[5], v[6], r);
  });
  sequence_cases(Op::gru_sequence, 3, [](std::vector<Var>& v, std::span<const std::uint8_t> r) {
    return gru_sequence(v[0], v[1], v[2], v[3], v[4], v[5], r);
  });
  // Gradients written over values nothing reads again (Recorder::grad_over_value): the head's into layer 2's
  // h_t, layer 2's into layer 1's h_t, layer 1's into the embedding rows.
  cases[Op::lstm_sequence].push_back(
      {"2 layers from an embedding into linear_cross_entropy",
       {m(5, 3), m(2, hid), m(2, hid), m(4 * hid, 3), m(4 * hid, hid), Shape::vector(4 * hid),
        Shape::vector(4 * hid), m(4 * hid, hid), m(4 * hid, hid), Shape::vector(4 * hid),
        Shape::vector(4 * hid), m(4, hid), Shape::vector(4)},
       [](auto& v) {
         const std::int32_t tokens[] = {0, 4, 2, 2, 1, 3};
         const std::int32_t targets[] = {3, 0, 1, 2, 0, 3};
         const Var y1 = lstm_sequence(gather_rows(v[0], tokens), v[1], v[2], v[3], v[4], v[5], v[6], resets);
         const Var y2 = lstm_sequence(slice_rows(y1, 0, 6), v[1], v[2], v[7], v[8], v[9], v[10]);
         return linear_cross_entropy(slice_rows(y2, 0, 6), v[11], v[12], targets);
       },
       -1.5,
       1.5});
  // The mask is a function of the tape's key, the same for every tape the check records: a fixed linear map.
  cases[Op::dropout] = {{"p = 0.4", {m(6, 5)}, [](auto& v) { return dropout(v[0], 0.4); }},
                        {"locked over 2-row steps", {m(6, 5)}, [](auto& v) {
                           return dropout(v[0], 0.5, {.period_rows = 2, .stream = 3});
                         }}};
  return cases;
}

}  // namespace

TEST_CASE("every op in the table has a gradient check", "[ops][gradcheck]") {
  const auto cases = op_cases();
  const std::vector<Op> table = {
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula) Op::name,
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
  };
  for (Op op : table) {
    INFO("op " << name_of(op));
    CHECK(cases.count(op) == 1);
  }
}

// Both modes over the same cases: reverse (gradients against central differences) and forward (each op's
// tangent rule through Tape::jvp, against central differences along random directions and against reverse
// mode's adjoint, <w, J v> = <J^T w, v>).
static void check_every_op(GradcheckMode mode) {
  std::uint64_t seed = 1;
  for (auto& [op, op_cases] : op_cases()) {
    for (const OpCase& c : op_cases) {
      std::vector<Parameter> params;
      for (std::size_t i = 0; i < c.inputs.size(); ++i)
        params.emplace_back("x" + std::to_string(i),
                            rwd::test::random_tensor(c.inputs[i], DType::f64, seed++, c.lo, c.hi, c.min_abs));
      std::vector<Parameter*> checked;
      for (Parameter& p : params) checked.push_back(&p);
      auto f = [&](Tape& tape) {
        std::vector<Var> vars;
        for (Parameter& p : params) vars.push_back(tape.param(p));
        return c.build(vars);
      };
      INFO("op " << name_of(op) << ": " << c.label);
      if (op == Op::stop_gradient) {
        // d/dx [tanh(x) * sg(x) + sg(exp(x))] through the uncut path only is (1 - tanh^2) * x, and so is
        // the tangent along a direction of ones.
        Tape tape(DType::f64);
        Var y = f(tape);
        Tensor ones(params[0].value().shape(), DType::f64);
        for (std::int64_t i = 0; i < ones.numel(); ++i) ones.set(i, 1.0);
        const Tangent direction{tape.param(params[0]), &ones};
        const Tensor tangent = tape.jvp(std::span(&direction, 1), std::span(&y, 1))[0];
        tape.backward(sum(y));
        const Tensor& g = params[0].grad();
        for (std::int64_t i = 0; i < g.numel(); ++i) {
          const double x = params[0].value().get(i);
          const Tensor& exact = mode == GradcheckMode::forward ? tangent : g;
          CHECK(exact.get(i) == Approx((1 - std::tanh(x) * std::tanh(x)) * x).epsilon(1e-12));
        }
        continue;
      }
      const GradcheckReport report = gradcheck(f, checked, {.atol = 1e-9, .rtol = 1e-6, .mode = mode});
      INFO(report.summary());
      CHECK(report.passed);
      CHECK(report.max_rel_error <= 1e-6);
    }
  }
}

TEST_CASE("gradients of every op match central differences in double", "[ops][gradcheck]") {
  check_every_op(GradcheckMode::automatic);
}

TEST_CASE("tangents of every op match central differences and reverse mode in double", "[ops][jvp]") {
  check_every_op(GradcheckMode::forward);
}
