#include "rewind/autodiff/graph.hpp"

#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <boost/graph/graphviz.hpp>
#include <boost/graph/reverse_graph.hpp>
#include <ostream>
#include <stdexcept>

#include "node.hpp"

namespace rwd::autodiff {

TapeGraph to_graph(const Tape& tape) {
  const std::vector<const Node*> nodes = tape.nodes();
  TapeGraph g(nodes.size());
  for (const Node* n : nodes) {
    TapeVertex& v = g[n->id];
    v.op = n->op;
    v.shape = n->shape;
    v.requires_grad = n->requires_grad;
    if (n->op == Op::parameter) v.parameter = n->param->name();
    for (std::uint32_t i = 0; i < n->n_inputs; ++i)
      boost::add_edge(n->inputs[i]->id, n->id, TapeEdge{n->op == Op::stop_gradient}, g);
  }
  return g;
}

namespace {
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

void write_dot(std::ostream& out, const TapeGraph& graph) {
  auto vertex_writer = [&](std::ostream& os, std::size_t v) {
    const TapeVertex& tv = graph[v];
    const std::string shape = tv.shape.str();
    switch (tv.op) {
      case Op::parameter:
        os << "[label=\"" << escape(tv.parameter) << "\\n"
           << shape << "\", shape=box, style=filled, fillcolor=\"#cfe2ff\"]";
        break;
      case Op::input:
        os << "[label=\"input\\n" << shape << "\", style=filled, fillcolor=\"#e5e5e5\"]";
        break;
      case Op::stop_gradient:
        os << "[label=\"stop_gradient\\n" << shape << "\", shape=octagon, color=red, fontcolor=red]";
        break;
      default:
        os << "[label=\"" << name_of(tv.op) << "\\n"
           << shape << "\"" << (tv.requires_grad ? "" : ", color=grey") << "]";
    }
  };
  auto edge_writer = [&](std::ostream& os, const TapeGraph::edge_descriptor& e) {
    if (graph[e].cut) os << "[color=red, style=dashed, penwidth=2, label=\"cut\", fontcolor=red]";
  };
  auto graph_writer = [](std::ostream& os) {
    os << "rankdir=LR;\nnode [fontname=\"Helvetica\", fontsize=10];\n";
  };
  boost::write_graphviz(out, graph, vertex_writer, edge_writer, graph_writer);
}

namespace {
// Gradient flows backward only through vertices that require a gradient.
struct CarriesGradient {
  const TapeGraph* graph = nullptr;
  bool operator()(std::size_t v) const { return (*graph)[v].requires_grad; }
};

struct Collect : boost::default_bfs_visitor {
  std::vector<std::size_t>* seen;
  template <class G>
  void discover_vertex(std::size_t v, const G&) const {
    seen->push_back(v);
  }
};
}  // namespace

Reach reached_by_backward(const TapeGraph& graph, std::size_t output) {
  if (output >= boost::num_vertices(graph))
    throw std::out_of_range("reached_by_backward: vertex " + std::to_string(output) +
                            " is not in the graph of " + std::to_string(boost::num_vertices(graph)) +
                            " vertices");
  Reach reach;
  if (!graph[output].requires_grad) return reach;
  const auto reversed = boost::make_reverse_graph(graph);
  const boost::filtered_graph<decltype(reversed), boost::keep_all, CarriesGradient> flow(
      reversed, boost::keep_all{}, CarriesGradient{&graph});
  std::vector<std::size_t> seen;
  boost::breadth_first_search(flow, output, boost::visitor(Collect{{}, &seen}));
  std::sort(seen.begin(), seen.end());
  for (std::size_t v : seen) {
    if (graph[v].op == Op::parameter) reach.parameters.push_back(graph[v].parameter);
    if (graph[v].op == Op::input) reach.inputs.push_back(v);
  }
  return reach;
}

}  // namespace rwd::autodiff
