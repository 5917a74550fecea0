// rewind plugins | gradcheck | graph: what a user runs to see, trust and picture a cell.
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "commands.hpp"
#include "parse.hpp"
#include "plugin_options.hpp"
#include "rewind/autodiff/graph.hpp"
#include "rewind/models/check.hpp"

namespace po = boost::program_options;

namespace rwd::cli {
namespace {

struct ModelShape {
  std::string name;
  std::int64_t input = 2, hidden = 3, batch = 2, vocab = 0, output = 2;
  int layers = 1, steps = 3;
  std::uint64_t seed = 1;

  void add_to(po::options_description& d) {
    d.add_options()("model", po::value(&name)->required(), "model plugin name (see rewind plugins)")(
        "input", po::value(&input)->default_value(input), "input features per step")(
        "hidden", po::value(&hidden)->default_value(hidden), "hidden size")(
        "layers", po::value(&layers)->default_value(layers), "stacked layers")(
        "vocab", po::value(&vocab)->default_value(vocab), "token vocabulary (0: real-valued inputs)")(
        "output", po::value(&output)->default_value(output), "head outputs (token models: the vocabulary)")(
        "batch", po::value(&batch)->default_value(batch), "batch rows")(
        "steps", po::value(&steps)->default_value(steps), "time steps unrolled")(
        "seed", po::value(&seed)->default_value(seed), "initialisation and data seed");
  }
  models::ModelConfig config(autodiff::DType dtype) const {
    models::ModelConfig c;
    c.vocab_size = vocab;
    c.input_size = vocab > 0 ? 0 : input;
    c.hidden_size = hidden;
    c.layers = layers;
    c.output_size = vocab > 0 ? vocab : output;
    c.seed = seed;
    c.dtype = dtype;
    return c;
  }
};

po::options_description with_help(const char* title) {
  po::options_description d(title);
  d.add_options()("help,h", "show this help");
  return d;
}

}  // namespace

int run_plugins(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  po::options_description options = with_help("rewind plugins options");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind plugins [--plugin FILE] [--plugin-dir DIR]"))
    return 0;
  const plugins::Registry registry = plugin_options.load(true);
  for (const plugins::LoadedPlugin* p : registry.plugins()) {
    const plugins::Descriptor& d = *p->descriptor;
    std::printf("%-8s %-14s %s\n", plugins::name_of(d.kind), d.name, d.description);
    // As rewind train takes them: model options with --option, trainer options with --trainer-option.
    const char* flag = d.kind == plugins::Kind::trainer ? "--trainer-option" : "--option";
    for (const models::OptionSpec& o : d.option_specs())
      std::printf("           %s %s=<%s> (default %s): %s\n", flag, o.name, models::name_of(o.type),
                  o.default_value, o.help);
    std::printf("           file: %s\n", p->file.c_str());
  }
  if (registry.plugins().empty()) std::printf("no plugins found\n");
  for (const std::string& problem : registry.problems()) std::printf("problem: %s\n", problem.c_str());
  return 0;
}

int run_gradcheck(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  ModelShape shape;
  double rtol = 1e-6, atol = 1e-8;
  std::int64_t max_elements = 0;
  std::string mode = "reverse";
  po::options_description options = with_help("rewind gradcheck options");
  shape.add_to(options);
  plugin_options.add_to(options);
  options.add_options()("rtol", po::value(&rtol)->default_value(rtol, shortest(rtol)), "relative tolerance")(
      "atol", po::value(&atol)->default_value(atol, shortest(atol)), "absolute tolerance")(
      "max-elements", po::value(&max_elements)->default_value(max_elements),
      "elements checked per parameter, at random (0: all; reverse mode)")(
      "mode", po::value(&mode)->default_value(mode),
      "reverse: gradients against central differences; forward: Jacobian-vector products (Tape::jvp) "
      "along random directions against central differences and against reverse mode");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind gradcheck --model NAME [--plugin FILE] [options]"))
    return 0;
  if (mode != "reverse" && mode != "forward")
    throw std::invalid_argument("--mode: '" + mode + "' is not reverse or forward");
  const plugins::Registry registry = plugin_options.load();
  auto model =
      registry.make_model(shape.name, shape.config(autodiff::DType::f64), plugin_options.option_map());
  const autodiff::GradcheckReport report = models::check_gradients(
      *model, {.batch = shape.batch, .steps = shape.steps, .seed = shape.seed},
      {.atol = atol,
       .rtol = rtol,
       .mode = mode == "forward" ? autodiff::GradcheckMode::forward : autodiff::GradcheckMode::automatic,
       .max_elements_per_parameter = max_elements});
  std::printf("%s check of model '%s' (%s), double precision, %d step(s), batch %lld, %d layer(s)\n\n",
              mode == "forward" ? "forward-mode (tangent)" : "gradient", shape.name.c_str(),
              registry.find(plugins::Kind::model, shape.name).file.c_str(), shape.steps,
              static_cast<long long>(shape.batch), shape.layers);
  std::printf("%s\n%s\n", report.table().c_str(), report.summary().c_str());
  return report.passed ? 0 : 1;
}

int run_graph(int argc, const char* const* argv) {
  PluginOptions plugin_options;
  ModelShape shape;
  shape.steps = 6;
  int cut = 0;
  std::string out;
  bool png = false;
  po::options_description options = with_help("rewind graph options");
  shape.add_to(options);
  plugin_options.add_to(options);
  options.add_options()("cut", po::value(&cut)->default_value(cut),
                        "stop_gradient on the carried state every K steps (0: none)")(
      "out", po::value(&out)->required(), "Graphviz DOT file to write")(
      "png", po::bool_switch(&png), "also render OUT.png with Graphviz dot");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind graph --model NAME --steps N [--cut K] --out FILE.dot [--png]"))
    return 0;
  const plugins::Registry registry = plugin_options.load();
  auto model =
      registry.make_model(shape.name, shape.config(autodiff::DType::f32), plugin_options.option_map());
  autodiff::Tape tape;
  const autodiff::Var loss = models::random_unroll(
      *model, tape, {.batch = shape.batch, .steps = shape.steps, .seed = shape.seed, .cut = cut});
  const autodiff::TapeGraph graph = autodiff::to_graph(tape);
  {
    const std::string temp = out + ".tmp";
    std::ofstream file(temp);
    if (!file) throw std::runtime_error("cannot write '" + out + "'");
    autodiff::write_dot(file, graph);
    file.close();
    if (!file || std::rename(temp.c_str(), out.c_str()) != 0)
      throw std::runtime_error("cannot write '" + out + "'");
  }
  const autodiff::Reach reach = autodiff::reached_by_backward(graph, loss.id());
  std::printf("wrote %s: %zu nodes, %d steps of '%s'%s\n", out.c_str(), boost::num_vertices(graph),
              shape.steps, shape.name.c_str(),
              cut > 0 ? (", state cut every " + std::to_string(cut) + " steps").c_str() : "");
  std::printf("the loss reaches %zu of %zu parameters\n", reach.parameters.size(),
              model->parameters().size());
  if (png) {
    if (std::system("command -v dot > /dev/null 2>&1") != 0) {
      std::printf("--png: Graphviz 'dot' is not installed (apt-get install graphviz); skipped\n");
    } else {
      const std::string command = "dot -Tpng " + shell_quote(out) + " -o " + shell_quote(out + ".png");
      if (std::system(command.c_str()) != 0) throw std::runtime_error("dot failed to render '" + out + "'");
      std::printf("wrote %s.png\n", out.c_str());
    }
  }
  return 0;
}

}  // namespace rwd::cli
