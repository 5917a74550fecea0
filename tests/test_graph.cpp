#include <catch2/catch.hpp>
#include <sstream>

#include "helpers.hpp"
#include "rewind/autodiff/graph.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;

namespace {
// h_t = tanh(h_{t-1} W + x_t U), with the carried state cut after step `cut`.
struct Unroll {
  Parameter w = rwd::test::random_parameter("rnn.weight_hh_l0", Shape::matrix(3, 3), 31);
  Parameter u = rwd::test::random_parameter("rnn.weight_ih_l0", Shape::matrix(2, 3), 32);
  Tape tape{DType::f64};
  Var h0, loss;

  Unroll(int steps, int cut) {
    h0 = tape.input(Tensor(Shape::matrix(1, 3), DType::f64), true);
    Var h = h0;
    for (int t = 0; t < steps; ++t) {
      if (t == cut) h = stop_gradient(h);
      Var x = tape.input(rwd::test::random_tensor(Shape::matrix(1, 2), DType::f64, 40 + t));
      Var recurrent = matmul(h, tape.param(w));
      h = tanh(recurrent + matmul(x, tape.param(u)));
    }
    loss = sum(h);
  }
};
}  // namespace

TEST_CASE("the tape exports as a Graphviz graph with the cut drawn", "[graph]") {
  Unroll unroll(4, 2);
  const TapeGraph g = to_graph(unroll.tape);
  CHECK(boost::num_vertices(g) == unroll.tape.size());
  std::ostringstream dot;
  write_dot(dot, g);
  const std::string s = dot.str();
  CHECK_THAT(s, Catch::StartsWith("digraph"));
  CHECK_THAT(s, Catch::Contains("rnn.weight_hh_l0\\n[3, 3]"));
  CHECK_THAT(s, Catch::Contains("shape=box"));
  CHECK_THAT(s, Catch::Contains("stop_gradient"));
  CHECK_THAT(s, Catch::Contains("label=\"cut\""));
  CHECK_THAT(s, Catch::Contains("matmul\\n[1, 3]"));
}

TEST_CASE("the reach query says which leaves backward updates", "[graph]") {
  SECTION("uncut: both weights and the initial state") {
    Unroll unroll(4, -1);
    const Reach r = reached_by_backward(to_graph(unroll.tape), unroll.loss.id());
    CHECK(r.parameters == std::vector<std::string>{"rnn.weight_hh_l0", "rnn.weight_ih_l0"});
    CHECK(r.inputs == std::vector<std::size_t>{unroll.h0.id()});
  }
  SECTION("cut: the weights still, the initial state no longer") {
    Unroll unroll(4, 2);
    const Reach r = reached_by_backward(to_graph(unroll.tape), unroll.loss.id());
    CHECK(r.parameters == std::vector<std::string>{"rnn.weight_hh_l0", "rnn.weight_ih_l0"});
    CHECK(r.inputs.empty());
    // And the query agrees with what backward actually does.
    unroll.tape.backward(unroll.loss);
    const Tensor g = unroll.tape.grad(unroll.h0);
    for (std::int64_t i = 0; i < g.numel(); ++i) CHECK(g.get(i) == 0.0);
  }
  SECTION("a vertex that does not exist is an error") {
    Unroll unroll(1, -1);
    CHECK_THROWS_WITH(reached_by_backward(to_graph(unroll.tape), 999), Catch::Contains("vertex 999"));
  }
}
