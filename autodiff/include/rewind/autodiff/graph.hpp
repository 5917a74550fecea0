// A recorded tape as a Boost.Graph: for Graphviz export and for questions about where gradients flow.
#pragma once

#include <boost/graph/adjacency_list.hpp>
#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include "rewind/autodiff/export.hpp"
#include "rewind/autodiff/tape.hpp"

namespace rwd::autodiff {

struct TapeVertex {
  Op op = Op::input;
  Shape shape;
  bool requires_grad = false;
  std::string parameter;  // the parameter's name for parameter leaves
};
struct TapeEdge {
  bool cut = false;  // the edge into a stop_gradient: values cross it, gradients do not
};
// Vertex i is the node with Var::id() == i; edges run from an input to the op that reads it.
using TapeGraph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, TapeVertex, TapeEdge>;

REWIND_AUTODIFF_EXPORT TapeGraph to_graph(const Tape& tape);
// Graphviz DOT: parameters as boxes, inputs as grey ellipses, ops labelled with their output shape, and
// stop_gradient cuts as red dashed edges into a red octagon.
REWIND_AUTODIFF_EXPORT void write_dot(std::ostream& out, const TapeGraph& graph);

struct Reach {
  std::vector<std::string> parameters;  // names, in recording order
  std::vector<std::size_t> inputs;      // vertices of input leaves with requires_grad
};
// The leaves that backward from `output` gives a gradient: what loss.backward() would actually update.
REWIND_AUTODIFF_EXPORT Reach reached_by_backward(const TapeGraph& graph, std::size_t output);

}  // namespace rwd::autodiff
