// rewind analyze truncation | horizon: what truncation costs in gradient on a model and its data, at fixed
// parameters. Thin front end over trainers/analysis.hpp; definitions in docs/truncation.md. Reads a saved
// model and never writes to it.
#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.hpp"
#include "parse.hpp"
#include "plot.hpp"
#include "plugin_options.hpp"
#include "rewind/models/safetensors.hpp"
#include "rewind/runtime/run_config.hpp"
#include "rewind/trainers/analysis.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rwd::cli {
using namespace rwd::runtime;  // RunConfig and the data and models it rebuilds
namespace {

// The model and data every analysis starts from: a saved run (--checkpoint), weights (--init) or a fresh
// model from the usual options, on --data / --task or the saved run's own data.
struct Subject {
  RunConfig config;
  PluginOptions plugin_options;
  std::string checkpoint, init, precision = "f64";
  std::int64_t steps = 100, segments = 4;
  std::uint64_t data_seed = 1;

  void add_to(po::options_description& o) {
    o.add_options()("help,h", "show this help")("checkpoint", po::value(&checkpoint),
                                                "a run saved by rewind train: its directory, "
                                                "model.safetensors or checkpoint.safetensors (read only)")(
        "init", po::value(&init),
        "or weights (.safetensors, PyTorch names) for the model the options describe")(
        "model", po::value(&config.model)->default_value(config.model), "model plugin")(
        "hidden", po::value(&config.hidden)->default_value(config.hidden), "hidden size")(
        "layers", po::value(&config.layers)->default_value(config.layers), "stacked layers")(
        "embedding", po::value(&config.embedding)->default_value(config.embedding),
        "embedding size (0: hidden)")("init-range", po::value(&config.init_range)->default_value(0.0, "0"),
                                      "U(-r, r) initialisation of a fresh model (0: PyTorch's)")(
        "seed", po::value(&config.seed)->default_value(config.seed), "initialisation seed of a fresh model")(
        "data", po::value(&config.data), "text file (default: the saved run's data, or the bundled text)")(
        "task", po::value(&config.task), "or a synthetic task: recall:L, adding:L, delay:D")(
        "data-seed", po::value(&data_seed)->default_value(data_seed), "seed of the task's sample")(
        "batch", po::value(&config.batch)->default_value(config.batch), "parallel streams")(
        "steps", po::value(&steps)->default_value(steps), "T: steps per segment")(
        "segments", po::value(&segments)->default_value(segments), "N: segments, one after the other")(
        "precision", po::value(&precision)->default_value(precision),
        "f64 (default: biases below float rounding stay visible) or f32");
    plugin_options.add_to(o);
  }

  // Builds the model and the data; `vm` tells which options were given.
  std::unique_ptr<models::Model> load(const po::variables_map& vm, std::unique_ptr<trainers::Dataset>& data) {
    if (!checkpoint.empty() && !init.empty())
      throw std::invalid_argument("give --checkpoint or --init, not both");
    if (precision != "f32" && precision != "f64")
      throw std::invalid_argument("--precision must be f32 or f64, got '" + precision + "'");
    if (steps < 1) throw std::invalid_argument("--steps must be >= 1, got " + std::to_string(steps));
    if (segments < 1) throw std::invalid_argument("--segments must be >= 1, got " + std::to_string(segments));
    if (vm.count("data") && vm.count("task")) throw std::invalid_argument("give --data or --task, not both");
    fs::path file;
    models::TensorMap tensors;
    std::map<std::string, std::string> meta;
    if (!checkpoint.empty()) {
      file = checkpoint;
      if (fs::is_directory(file)) file /= "model.safetensors";
      try {
        tensors = models::load_safetensors(file, &meta);
      } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("--checkpoint: ") + e.what());
      }
      if (!meta.count("rewind.run"))
        throw std::invalid_argument("--checkpoint: '" + file.string() +
                                    "' holds no run configuration (rewind.run); for bare weights use --init");
      const RunConfig saved = RunConfig::from_json(meta.at("rewind.run"));
      RunConfig merged = saved;
      // Options given here override the saved run's; a model that then does not fit is refused below.
      if (!vm["model"].defaulted()) merged.model = config.model;
      if (!vm["hidden"].defaulted()) merged.hidden = config.hidden;
      if (!vm["layers"].defaulted()) merged.layers = config.layers;
      if (!vm["embedding"].defaulted()) merged.embedding = config.embedding;
      if (vm.count("option")) merged.model_options = plugin_options.option_map();
      if (!vm["batch"].defaulted()) merged.batch = config.batch;
      if (vm.count("data")) merged.data = config.data, merged.task.clear();
      if (vm.count("task")) merged.task = config.task, merged.data.clear();
      config = merged;
    } else {
      config.model_options = plugin_options.option_map();
      if (config.task.empty() && config.data.empty()) config.data = REWIND_DEFAULT_DATA;
    }
    config.validate();
    const std::int64_t needed = steps * segments;
    if (!config.task.empty()) {
      data = trainers::synthetic_task(config.task, config.batch, needed, data_seed);
    } else if (config.series()) {
      data = std::move(load_csv(config).train);
    } else {
      data = std::move(load_text(config).train);
    }
    if (needed > data->steps())
      throw std::invalid_argument("--segments " + std::to_string(segments) + " x --steps " +
                                  std::to_string(steps) + " = " + std::to_string(needed) +
                                  " steps per stream, the data has " + std::to_string(data->steps()) +
                                  " (fewer --batch streams make them longer)");
    plugins::Registry& registry = this->registry();
    find_model_plugin(registry, config);
    models::ModelConfig mc = config.model_config(*data);
    auto model = registry.make_model(config.model, mc, config.model_options);
    const bool checkpoint_file = meta.count("rewind.checkpoint") > 0;
    if (!init.empty()) {
      file = init;
      try {
        tensors = models::load_safetensors(file, &meta);
      } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("--init: ") + e.what());
      }
    }
    if (!file.empty()) {
      try {
        models::assign_parameters(tensors, *model, file, !checkpoint_file);
      } catch (const std::exception& e) {
        throw std::invalid_argument((checkpoint.empty() ? "--init: " : "--checkpoint: ") +
                                    std::string(e.what()));
      }
    }
    if (precision == "f32") return model;
    // The same weights in double precision: a second model whose parameters are the first's, converted.
    mc.dtype = autodiff::DType::f64;
    auto wide = registry.make_model(config.model, mc, config.model_options);
    const auto from = model->parameters();
    const auto to = wide->parameters();
    for (std::size_t i = 0; i < to.size(); ++i) {
      to[i]->value() = from[i]->value().to(autodiff::DType::f64);
      to[i]->grad() = autodiff::Tensor(to[i]->value().shape(), autodiff::DType::f64);
      to[i]->zero_grad();
    }
    return wide;
  }

  plugins::Registry& registry() {
    if (!registry_) registry_ = std::make_unique<plugins::Registry>(plugin_options.load());
    return *registry_;
  }

  std::string describe() const {
    return config.model + " (hidden " + std::to_string(config.hidden) + ", " + std::to_string(config.layers) +
           " layer(s)) on " + (config.task.empty() ? config.data : "task " + config.task) + ", batch " +
           std::to_string(config.batch) + ", " + std::to_string(segments) + " segment(s) of " +
           std::to_string(steps) + " steps, " + precision;
  }

 private:
  std::unique_ptr<plugins::Registry> registry_;
};

struct Spread {
  double mean = 0, sd = 0;
};
template <class F>
Spread spread(const std::vector<trainers::TruncationSegment>& segments, F value) {
  Spread s;
  for (const auto& seg : segments) s.mean += value(seg);
  s.mean /= static_cast<double>(segments.size());
  for (const auto& seg : segments) s.sd += (value(seg) - s.mean) * (value(seg) - s.mean);
  s.sd = segments.size() > 1 ? std::sqrt(s.sd / static_cast<double>(segments.size() - 1)) : 0.0;
  return s;
}

// "1,2,5" -> {1, 2, 5}, each >= 1 and <= T; errors name the option.
std::vector<std::int64_t> k_list(const std::string& text, const std::string& option, std::int64_t steps) {
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list(text)) {
    const std::int64_t k = parse_integer(item, option);
    if (k < 1) throw std::invalid_argument(option + ": lengths must be positive, got " + item);
    if (k > steps)
      throw std::invalid_argument(option + ": " + item + " exceeds --steps " + std::to_string(steps) +
                                  " (k = T is full BPTT already)");
    out.push_back(k);
  }
  if (out.empty()) throw std::invalid_argument(option + ": the list is empty");
  return out;
}

std::vector<trainers::TruncationSetting> settings_from(const po::variables_map& vm, const std::string& k,
                                                       const std::string& k1, const std::string& k2,
                                                       std::int64_t steps) {
  std::vector<trainers::TruncationSetting> out;
  if (!vm.count("k") && !vm.count("k1") && !vm.count("k2") && vm.count("trainers")) return out;
  if (vm.count("k")) {
    if (vm.count("k1") || vm.count("k2")) throw std::invalid_argument("give --k, or --k1 and --k2, not both");
    for (std::int64_t v : k_list(k, "--k", steps)) out.push_back({v, v});
    return out;
  }
  if (!vm.count("k1") && !vm.count("k2"))
    throw std::invalid_argument("--k (or --k1 and --k2, or --trainers) is required");
  const auto a = vm.count("k1") ? k_list(k1, "--k1", steps) : std::vector<std::int64_t>{};
  const auto b = vm.count("k2") ? k_list(k2, "--k2", steps) : a;
  const auto first = a.empty() ? b : a;
  // Pairs in order; a single value pairs with every value of the other list.
  const std::size_t n = std::max(first.size(), b.size());
  if (first.size() != n && first.size() != 1)
    throw std::invalid_argument("--k1 and --k2: lists of " + std::to_string(first.size()) + " and " +
                                std::to_string(b.size()) + " values (give equal lengths, or one value)");
  if (b.size() != n && b.size() != 1)
    throw std::invalid_argument("--k1 and --k2: lists of " + std::to_string(first.size()) + " and " +
                                std::to_string(b.size()) + " values (give equal lengths, or one value)");
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t v1 = first[first.size() == 1 ? 0 : i], v2 = b[b.size() == 1 ? 0 : i];
    if (v1 > v2)
      throw std::invalid_argument("--k1 " + std::to_string(v1) + " exceeds --k2 " + std::to_string(v2) +
                                  " (need k1 <= k2)");
    out.push_back({v1, v2});
  }
  return out;
}

// --trainers: a row per trainer plugin, over --seeds seeds for those that declare a seed.
std::vector<trainers::TruncationSetting> trainer_rows(const std::string& list, std::int64_t seeds,
                                                      const plugins::Registry& registry) {
  std::vector<trainers::TruncationSetting> out;
  std::stringstream items(list);
  for (std::string name; std::getline(items, name, ',');) {
    const auto specs = registry.find(plugins::Kind::trainer, name).descriptor->option_specs();
    const bool seeded =
        std::any_of(specs.begin(), specs.end(), [](const auto& o) { return std::string(o.name) == "seed"; });
    out.emplace_back(name, seeded ? seeds : 1);
  }
  if (out.empty()) throw std::invalid_argument("--trainers: the list is empty");
  return out;
}

// Every figure of every setting, per segment and per parameter tensor (--json).
json truncation_json(const trainers::TruncationAnalysis& a) {
  json results = json::array();
  for (const trainers::TruncationResult& r : a.results) {
    json per_segment = json::array();
    for (const auto& s : r.segments) {
      json params = json::object();
      for (std::size_t p = 0; p < a.parameters.size(); ++p)
        params[a.parameters[p]] = {{"cosine", s.parameters[p].cosine},
                                   {"relative_error", s.parameters[p].relative_error},
                                   {"norm_ratio", s.parameters[p].norm_ratio}};
      per_segment.push_back({{"cosine", s.overall.cosine},
                             {"relative_error", s.overall.relative_error},
                             {"norm_ratio", s.overall.norm_ratio},
                             {"parameters", params}});
    }
    results.push_back({{"k1", r.setting.k1},
                       {"k2", r.setting.k2},
                       {"trainer", r.setting.trainer.empty() ? "truncated" : r.setting.trainer},
                       {"seeds", r.setting.seeds},
                       {"tape_peak_bytes", r.tape_peak_bytes},
                       {"seconds", r.seconds},
                       {"segments", per_segment}});
  }
  return json{{"steps", a.steps},
              {"segments", a.segments},
              {"segments_used", a.segments_used},
              {"parameters", a.parameters},
              {"full", {{"tape_peak_bytes", a.full_tape_peak_bytes}, {"seconds", a.full_seconds}}},
              {"results", results}};
}

// Relative error and cosine against k2, overall and per parameter tensor, from the table's CSV.
void plot_truncation(const trainers::TruncationAnalysis& a, const std::string& title, const std::string& csv,
                     const std::string& png) {
  std::ostringstream gp;
  gp << "set datafile separator ','\nset key outside right\nset grid\nset logscale x\n"
     << "set multiplot layout 1,2 title '" << title << "'\n"
     << "set title 'relative error ||g_k - g|| / ||g||'\nset xlabel 'k2 (steps backpropagated)'\nplot ";
  for (std::size_t p = 0; p <= a.parameters.size(); ++p)
    gp << (p ? ", " : "") << "'" << csv << "' using ($3 == " << p
       << " && $2 > 0 ? $2 : 1/0):7 with linespoints " << (p == 0 ? "lw 3 lc rgb 'black' " : "") << "title '"
       << (p == 0 ? "all" : a.parameters[p - 1]) << "'";
  gp << "\nset title 'cosine(g_k, g)'\nset key off\nplot ";
  for (std::size_t p = 0; p <= a.parameters.size(); ++p)
    gp << (p ? ", " : "") << "'" << csv << "' using ($3 == " << p
       << " && $2 > 0 ? $2 : 1/0):5 with linespoints " << (p == 0 ? "lw 3 lc rgb 'black' " : "") << "notitle";
  gp << "\nunset multiplot\n";
  render_gnuplot(png, "1500,560", gp.str());
}

int run_truncation(int argc, const char* const* argv) {
  Subject subject;
  std::string k, k1, k2, trainer_list, csv_path, json_path, plot;
  std::int64_t seeds = 10;
  po::options_description options("rewind analyze truncation options");
  subject.add_to(options);
  options.add_options()("k", po::value(&k),
                        "truncation lengths k1 = k2 = k, comma-separated (each <= --steps)")(
      "k1", po::value(&k1), "or k1 values (steps between updates), comma-separated")(
      "k2", po::value(&k2), "and k2 values (steps backpropagated), paired with --k1 in order")(
      "trainers", po::value(&trainer_list),
      "and rows for other trainer plugins, comma-separated (rtrl, uoro, artbp), with their default options")(
      "seeds", po::value(&seeds)->default_value(seeds), "seeds per row of a trainer that declares a seed")(
      "csv", po::value(&csv_path), "write the table as CSV")("json", po::value(&json_path),
                                                             "write every figure, per segment, as JSON")(
      "plot", po::value(&plot), "write a PNG with gnuplot: relative error and cosine against k");
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind analyze truncation [--checkpoint DIR | model options] [--data F | --task "
          "T] --steps T --segments N --k 1,5,20 [--trainers rtrl,uoro] [--csv F] [--json F] [--plot F.png]"))
    return 0;
  if (subject.steps < 1)
    throw std::invalid_argument("--steps must be >= 1, got " + std::to_string(subject.steps));
  auto settings = settings_from(vm, k, k1, k2, subject.steps);
  std::unique_ptr<trainers::Dataset> data;
  auto model = subject.load(vm, data);
  const plugins::Registry& registry = subject.registry();
  if (vm.count("trainers"))
    for (auto& row : trainer_rows(trainer_list, seeds, registry)) settings.push_back(std::move(row));
  const trainers::TruncationAnalysis a =
      trainers::analyze_truncation(*model, *data, subject.steps, subject.segments, settings,
                                   [&](const std::string& name, const std::map<std::string, std::string>& o) {
                                     return registry.make_trainer(name, o);
                                   });
  std::printf("analyze truncation: %s; %lld segment(s) with targets\n", subject.describe().c_str(),
              static_cast<long long>(a.segments_used));
  std::printf("full BPTT: tape peak %.2f MiB, %.3f s\n",
              static_cast<double>(a.full_tape_peak_bytes) / (1 << 20), a.full_seconds);
  std::printf("%11s %22s %24s %20s %14s %9s\n", "k1,k2", "cosine (mean +- sd)", "rel. error (mean +- sd)",
              "norm ratio", "tape peak MiB", "seconds");
  std::ostringstream csv;
  csv << "k1,k2,parameter_index,parameter,cosine_mean,cosine_sd,relative_error_mean,relative_error_sd,"
         "norm_ratio_mean,norm_ratio_sd,tape_peak_bytes,seconds,trainer\n";
  auto csv_row = [&](const trainers::TruncationResult& r, std::size_t index, const std::string& name,
                     auto value) {
    const Spread c = spread(r.segments, [&](const auto& s) { return value(s).cosine; });
    const Spread e = spread(r.segments, [&](const auto& s) { return value(s).relative_error; });
    const Spread n = spread(r.segments, [&](const auto& s) { return value(s).norm_ratio; });
    csv << r.setting.k1 << ',' << r.setting.k2 << ',' << index << ',' << name << ',' << c.mean << ',' << c.sd
        << ',' << e.mean << ',' << e.sd << ',' << n.mean << ',' << n.sd << ',' << r.tape_peak_bytes << ','
        << r.seconds << ',' << (r.setting.trainer.empty() ? "truncated" : r.setting.trainer) << '\n';
    return std::array<Spread, 3>{c, e, n};
  };
  for (const trainers::TruncationResult& r : a.results) {
    const auto [c, e, n] = csv_row(r, 0, "all", [](const auto& s) { return s.overall; });
    std::printf("%11s %12.8f +- %-7.1e %13.3e +- %-8.1e %9.4f +- %-7.1e %14.2f %9.3f\n",
                r.setting.label().c_str(), c.mean, c.sd, e.mean, e.sd, n.mean, n.sd,
                static_cast<double>(r.tape_peak_bytes) / (1 << 20), r.seconds);
  }
  std::printf("\nrelative error per parameter tensor (mean over segments):\n%-22s", "parameter");
  for (const auto& r : a.results) std::printf(" %11s", r.setting.label().c_str());
  std::printf("\n");
  for (std::size_t p = 0; p < a.parameters.size(); ++p) {
    std::printf("%-22s", a.parameters[p].c_str());
    for (const auto& r : a.results) {
      const auto [c, e, n] =
          csv_row(r, p + 1, a.parameters[p], [p](const auto& s) { return s.parameters[p]; });
      std::printf(" %11.3e", e.mean);
    }
    std::printf("\n");
  }
  std::string csv_for_plot = csv_path.empty() && !plot.empty() ? plot + ".csv" : csv_path;
  if (!csv_for_plot.empty()) write_text_file(csv_for_plot, csv.str(), csv_path.empty() ? "--plot" : "--csv");
  if (!json_path.empty()) write_text_file(json_path, truncation_json(a).dump(2) + "\n", "--json");
  if (!plot.empty()) plot_truncation(a, subject.describe(), csv_for_plot, plot);
  return 0;
}

int run_horizon(int argc, const char* const* argv) {
  Subject subject;
  std::int64_t lags = 50, loss_steps = 8;
  double tolerance = 0.1;
  std::string csv_path, json_path, plot;
  po::options_description options("rewind analyze horizon options");
  subject.add_to(options);
  options.add_options()("lags", po::value(&lags)->default_value(lags), "J: lags 1..J measured")(
      "tolerance", po::value(&tolerance)->default_value(tolerance, shortest(tolerance)),
      "relative gradient bias accepted, in (0, 1): the suggested k is the smallest under it")(
      "loss-steps", po::value(&loss_steps)->default_value(loss_steps),
      "loss steps per segment (the latest with targets), one backward pass each")(
      "csv", po::value(&csv_path), "write the curve as CSV")("json", po::value(&json_path),
                                                             "write it as JSON")(
      "plot", po::value(&plot), "write a PNG with gnuplot: the norms with the fit, and the bias against k");
  po::variables_map vm;
  if (!parse_command_line(
          argc, argv, options, vm,
          "usage: rewind analyze horizon [--checkpoint DIR | model options] [--data F | --task T] "
          "--steps T --segments N --lags J --tolerance 0.1 [--csv F] [--json F] [--plot F.png]"))
    return 0;
  if (!(tolerance > 0 && tolerance < 1))
    throw std::invalid_argument("--tolerance must lie in (0, 1), got " + shortest(tolerance));
  if (lags < 2)
    throw std::invalid_argument("--lags must be >= 2 to fit a decay, got " + std::to_string(lags));
  std::unique_ptr<trainers::Dataset> data;
  auto model = subject.load(vm, data);
  const trainers::HorizonAnalysis h =
      trainers::analyze_horizon(*model, *data, subject.steps, subject.segments, lags, tolerance, loss_steps);
  std::printf("analyze horizon: %s; %lld loss step(s)\n", subject.describe().c_str(),
              static_cast<long long>(h.loss_steps));
  std::printf("%5s %14s %9s %14s %16s\n", "lag j", "mean norm", "samples", "fit", "bias of k = j");
  std::ostringstream csv;
  csv << "lag,mean_norm,samples,fit,bias\n";
  json curve = json::array();
  // Lag 0 is the state the loss reads; an unroll of k = 0 steps would keep nothing (bias 1).
  for (std::size_t j = 0; j < h.mean_norm.size(); ++j) {
    const double fit = h.scale * std::pow(h.lambda, static_cast<double>(j));
    const double bias = j == 0 ? 1.0 : j - 1 < h.bias.size() ? h.bias[j - 1] : NAN;
    std::printf("%5zu %14.6e %9lld %14.6e %16.6f\n", j, h.mean_norm[j], static_cast<long long>(h.samples[j]),
                fit, bias);
    csv << j << ',' << h.mean_norm[j] << ',' << h.samples[j] << ',' << fit << ',' << bias << '\n';
    curve.push_back({{"lag", j}, {"mean_norm", h.mean_norm[j]}, {"samples", h.samples[j]}, {"fit", fit}});
  }
  std::printf("fitted decay lambda = %.4f per step (norm ~ %.3e * lambda^j)\n", h.lambda, h.scale);
  if (h.suggested_k > 0)
    std::printf("suggested k = %lld: the smallest unroll whose estimated relative bias is at most %s\n",
                static_cast<long long>(h.suggested_k), shortest(tolerance).c_str());
  else
    std::printf("no suggested k: the norms do not decay (lambda >= 1), so no truncation bounds the bias\n");
  std::string csv_for_plot = csv_path.empty() && !plot.empty() ? plot + ".csv" : csv_path;
  if (!csv_for_plot.empty()) write_text_file(csv_for_plot, csv.str(), csv_path.empty() ? "--plot" : "--csv");
  if (!json_path.empty())
    write_text_file(json_path,
                    json{{"lambda", std::isfinite(h.lambda) ? json(h.lambda) : json(nullptr)},
                         {"scale", h.scale},
                         {"tolerance", h.tolerance},
                         {"suggested_k", h.suggested_k},
                         {"loss_steps", h.loss_steps},
                         {"bias", h.bias},
                         {"curve", curve}}
                            .dump(2) +
                        "\n",
                    "--json");
  if (!plot.empty()) {
    std::ostringstream gp;
    gp << "set datafile separator ','\nset key top right\nset grid\n"
       << "set multiplot layout 1,2 title '" << subject.describe() << "'\n"
       << "set logscale y\nset title 'mean ||dL_t / dh_{t-j}||'\nset xlabel 'lag j'\nplot '" << csv_for_plot
       << "' using 1:($2 > 0 ? $2 : 1/0) with linespoints title 'measured', '' using 1:4 with lines dashtype "
          "2 "
          "title sprintf('fit, lambda = %.3f', "
       << h.lambda << ")\nunset logscale y\nset title 'estimated relative bias of a k-step unroll'\n"
       << "set xlabel 'k'\nset yrange [0:1.05]\nplot '" << csv_for_plot
       << "' using 1:5 with linespoints title 'bias', " << tolerance
       << " with lines dashtype 2 title 'tolerance'";
    if (h.suggested_k > 0)
      gp << ", '+' using (" << h.suggested_k << "):(" << tolerance
         << ") with points pt 7 ps 2 title 'suggested k = " << h.suggested_k << "'";
    gp << "\nunset multiplot\n";
    render_gnuplot(plot, "1400,560", gp.str());
  }
  return 0;
}

}  // namespace

int run_analyze(int argc, const char* const* argv) {
  const std::string what = argc >= 2 ? argv[1] : "";
  if (what == "truncation") return run_truncation(argc - 1, argv + 1);
  if (what == "horizon") return run_horizon(argc - 1, argv + 1);
  if (what == "--help" || what == "-h") {
    std::printf(
        "usage: rewind analyze truncation|horizon [options]   (rewind analyze truncation --help)\n"
        "  truncation  the gradient truncated BPTT(k1, k2) accumulates against the full one, per k\n"
        "  horizon     how the gradient of a loss decays with the lag of the state, and the k it suggests\n");
    return 0;
  }
  throw std::invalid_argument("usage: rewind analyze truncation|horizon [options]" +
                              (what.empty() ? std::string() : " (got '" + what + "')"));
}

}  // namespace rwd::cli
