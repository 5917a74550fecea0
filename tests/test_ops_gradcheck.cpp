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
  auto binary = [&](Op op, Var (*f)(const Var&, const Var&)) {
    auto fn = [f](std::vector<Var>& v) { return f(v[0], v[1]); };
    cases[op] = {{"same shape", {m(3, 4), m(3, 4)}, fn},
                 {"row bias on the right", {m(3, 4), m(1, 4)}, fn},
                 {"rank-1 bias on the right", {m(3, 4), Shape::vector(4)}, fn},
                 {"row broadcast on the left", {m(1, 4), m(3, 4)}, fn}};
  };
  binary(Op::add, add);
  binary(Op::sub, sub);
  binary(Op::mul, mul);
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
  cases[Op::mse] = {{"both sides", {m(3, 4), m(3, 4)}, [](auto& v) { return mse(v[0], v[1]); }}};
  // stop_gradient's numeric derivative is not zero, so it is checked as part of a function whose other path
  // must still be exact; its own cut is asserted to be exactly zero in test_tape.cpp.
  cases[Op::stop_gradient] = {{"the other path stays exact", {m(3, 4)}, [](auto& v) {
                                 return mul(tanh(v[0]), stop_gradient(v[0])) + stop_gradient(exp(v[0]));
                               }}};
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
  cases[Op::dropout] = {
      {"p = 0.4", {m(6, 5)}, [](auto& v) { return dropout(v[0], 0.4); }},
      {"locked over 2-row steps",
       {m(6, 5)},
       [](auto& v) { return dropout(v[0], 0.5, {.period_rows = 2, .stream = 3}); }}};
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

TEST_CASE("gradients of every op match central differences in double", "[ops][gradcheck]") {
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
        // d/dx [tanh(x) * sg(x) + sg(exp(x))] through the uncut path only is (1 - tanh^2) * x.
        Tape tape(DType::f64);
        Var y = sum(f(tape));
        tape.backward(y);
        const Tensor& g = params[0].grad();
        for (std::int64_t i = 0; i < g.numel(); ++i) {
          const double x = params[0].value().get(i);
          CHECK(g.get(i) == Approx((1 - std::tanh(x) * std::tanh(x)) * x).epsilon(1e-12));
        }
        continue;
      }
      const GradcheckReport report = gradcheck(f, checked, {.atol = 1e-9, .rtol = 1e-6});
      INFO(report.summary());
      CHECK(report.passed);
      CHECK(report.max_rel_error <= 1e-6);
    }
  }
}
