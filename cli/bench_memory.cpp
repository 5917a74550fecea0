// rewind bench-memory: memory and speed of trainers side by side, each (trainer, T) in its own child process
// so that peak RSS figures do not mix. Table on stdout, optional CSV, JSON and a gnuplot PNG.
#include <sys/resource.h>
#include <sys/wait.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "commands.hpp"
#include "parse.hpp"
#include "plot.hpp"
#include "plugin_options.hpp"
#include "rewind/trainers/loop.hpp"

namespace po = boost::program_options;
using json = nlohmann::json;

namespace rwd::cli {
namespace {

struct BenchSetup {
  std::string model = "lstm";
  std::int64_t hidden = 128, batch = 32, input = 64;
  std::int64_t passes = 1;
  std::uint64_t seed = 1;
  std::string precision = "f32";  // of the products: f32 or bf16 (autodiff::MatmulPrecision)
};

// "truncated:20" -> ("truncated", {k: 20}); "truncated:5:25" -> k1, k2; "checkpointed:50" -> segment.
std::pair<std::string, std::map<std::string, std::string>> parse_trainer(const std::string& spec) {
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  if (parts.empty()) throw std::invalid_argument("empty trainer spec");
  std::map<std::string, std::string> options;
  if (parts[0] == "truncated" && parts.size() == 2)
    options["k"] = parts[1];
  else if (parts[0] == "truncated" && parts.size() == 3)
    options["k1"] = parts[1], options["k2"] = parts[2];
  else if (parts[0] == "checkpointed" && parts.size() == 2)
    options["segment"] = parts[1];
  else if (parts.size() != 1)
    throw std::invalid_argument("trainer spec '" + spec +
                                "': expected full, truncated:K, truncated:K1:K2 or checkpointed[:C]");
  return {parts[0], options};
}

// Floats per batch row and step that backward must keep at the least: the activated gates, the state the
// next step's gradient needs, and the step's input (for the weight gradients).
double minimum_saved_floats(const std::string& model, std::int64_t hidden, std::int64_t input) {
  const auto h = static_cast<double>(hidden), i = static_cast<double>(input);
  if (model == "lstm") return 6 * h + i;  // i, f, g, o, c, h
  if (model == "gru") return 5 * h + i;   // r, z, n, W_hn h + b_hn, h
  if (model == "rnn") return h + i;       // h
  return 0;
}

json run_child(const plugins::Registry& registry, const BenchSetup& s, const std::string& trainer_spec,
               std::int64_t steps) {
  const auto [name, options] = parse_trainer(trainer_spec);
  trainers::TokenData data(s.batch, steps, s.input);
  std::mt19937_64 rng(s.seed);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      data.input(t, b) = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(s.input));
      data.target(t, b) = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(s.input));
    }
  models::ModelConfig config;
  config.vocab_size = s.input;
  config.input_size = s.input;
  config.hidden_size = s.hidden;
  config.seed = s.seed;
  auto model = registry.make_model(s.model, config);
  auto trainer = registry.make_trainer(name, options);
  const autodiff::MatmulPrecisionGuard products(s.precision == "bf16" ? autodiff::MatmulPrecision::bf16
                                                                      : autodiff::MatmulPrecision::f32);
  trainers::Optimizer sgd({.kind = "sgd", .lr = 1e-3});
  trainers::Loop loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return data; },
                      {.max_passes = s.passes});
  std::size_t tape_peak = 0;
  std::int64_t updates = 0, recorded = 0;
  const auto started = std::chrono::steady_clock::now();
  loop.run([&](const trainers::UpdateReport& r) {
    tape_peak = std::max(tape_peak, r.stats.tape.peak_bytes);
    recorded += r.steps_recorded;
    ++updates;
    return true;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double processed = static_cast<double>(steps * s.passes);
  return {{"trainer", trainer_spec},
          {"steps", steps},
          {"updates", updates},
          {"tape_peak_bytes", tape_peak},
          {"peak_rss_bytes", static_cast<std::int64_t>(usage.ru_maxrss) * 1024},
          {"seconds", seconds},
          {"us_per_step", seconds / processed * 1e6},
          {"steps_x_batch_per_second", processed * static_cast<double>(s.batch) / seconds},
          {"steps_recorded", recorded}};
}

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / (1 << 20));
  return buf;
}

void write_plot(const std::string& png, const std::string& csv, const std::vector<std::string>& specs,
                const BenchSetup& s) {
  std::ostringstream gp;
  gp << "set datafile separator ','\nset key top left\nset grid\nset logscale x\n"
     << "set multiplot layout 1,2 title '" << s.model << ", hidden " << s.hidden << ", batch " << s.batch
     << ", input " << s.input << "'\n"
     << "set logscale y\nset title 'tape peak memory'\nset xlabel 'sequence length T'\nset ylabel "
        "'MiB'\nplot ";
  for (std::size_t i = 0; i < specs.size(); ++i)
    gp << "'" << csv << "' using ($1 == " << i << " ? $3 : 1/0):($4/1048576) with linespoints title '"
       << specs[i] << "', ";
  gp << "'" << csv
     << "' using 3:($6/1048576) with lines dashtype 2 lc rgb 'black' title 'minimum saved activations "
        "(full)'\n"
     << "unset logscale y\nset title 'throughput'\nset ylabel 'time steps x batch / s'\nplot ";
  for (std::size_t i = 0; i < specs.size(); ++i)
    gp << (i ? ", " : "") << "'" << csv << "' using ($1 == " << i << " ? $3 : 1/0):8 with linespoints title '"
       << specs[i] << "'";
  gp << "\nunset multiplot\n";
  render_gnuplot(png, "1400,560", gp.str());
}

// One configuration in a child process of its own (a fresh peak RSS); its JSON result, or the reason it
// failed.
std::optional<json> run_in_child(const std::string& command, std::string& why) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start " + command);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = ::pclose(pipe);
  if (status == 0 && !out.empty()) return json::parse(out.substr(out.find('{')));
  // pclose gives a wait status: the child's exit code, or the signal that ended it (an OOM kill).
  why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                            : "exit code " + std::to_string(WEXITSTATUS(status));
  return std::nullopt;
}

void write_csv(const std::string& path, const json& results, const std::string& option) {
  std::ostringstream csv;
  csv << "trainer_index,trainer,steps,tape_peak_bytes,peak_rss_bytes,minimum_saved_bytes_full,us_per_step,"
         "steps_x_batch_per_second\n";
  for (const json& r : results)
    csv << r["trainer_index"] << ',' << r["trainer"].get<std::string>() << ',' << r["steps"] << ','
        << r["tape_peak_bytes"] << ',' << r["peak_rss_bytes"] << ',' << r["minimum_saved_bytes_full"] << ','
        << r["us_per_step"] << ',' << r["steps_x_batch_per_second"] << '\n';
  write_text_file(path, csv.str(), option);
}

}  // namespace

int run_bench_memory(int argc, const char* const* argv) {
  BenchSetup s;
  PluginOptions plugin_options;
  std::string seq = "100,1000,10000", trainer_list = "full,truncated:20,checkpointed", csv_path, json_path,
              plot;
  std::string child_trainer;
  std::int64_t child_steps = 0;
  po::options_description options("rewind bench-memory options");
  options.add_options()("help,h", "show this help")("model", po::value(&s.model)->default_value(s.model),
                                                    "model plugin")(
      "seq", po::value(&seq)->default_value(seq), "sequence lengths T, comma-separated")(
      "trainers", po::value(&trainer_list)->default_value(trainer_list),
      "full, truncated:K, truncated:K1:K2, checkpointed[:C], comma-separated")(
      "hidden", po::value(&s.hidden)->default_value(s.hidden), "hidden size")(
      "batch", po::value(&s.batch)->default_value(s.batch), "batch rows")(
      "input", po::value(&s.input)->default_value(s.input),
      "embedding size = vocabulary of the random tokens")(
      "passes", po::value(&s.passes)->default_value(s.passes), "passes over the T steps per configuration")(
      "seed", po::value(&s.seed)->default_value(s.seed), "seed")(
      "precision", po::value(&s.precision)->default_value(s.precision),
      "products in f32, or bf16 (operands rounded to bfloat16, sums in f32; CPUs with AVX512_BF16)")(
      "csv", po::value(&csv_path), "write the table as CSV")(
      "json", po::value(&json_path), "write the results as JSON")("plot", po::value(&plot),
                                                                  "write a PNG with gnuplot")(
      "child-trainer", po::value(&child_trainer), "(internal) run one configuration and print it as JSON")(
      "child-steps", po::value(&child_steps), "(internal)");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind bench-memory --model lstm --seq 100,1000,10000 --trainers "
                          "full,truncated:20,checkpointed "
                          "[--plot m.png]"))
    return 0;
  const plugins::Registry registry = plugin_options.load(true);
  if (!child_trainer.empty()) {
    std::cout << run_child(registry, s, child_trainer, child_steps).dump() << std::endl;
    return 0;
  }

  const std::vector<std::string> specs = split_list(trainer_list);
  std::vector<std::int64_t> lengths;
  for (const std::string& t : split_list(seq)) {
    lengths.push_back(parse_integer(t, "--seq"));
    if (lengths.back() < 1) throw std::invalid_argument("--seq: lengths must be positive, got " + t);
  }
  for (const std::string& spec : specs) parse_trainer(spec);  // reject a bad spec before running anything
  if (s.precision != "f32" && s.precision != "bf16")
    throw std::invalid_argument("--precision must be f32 or bf16, got '" + s.precision + "'");
  if (s.precision == "bf16")
    if (const std::string why = autodiff::bf16_unavailable_reason(); !why.empty())
      throw std::invalid_argument("--precision bf16 cannot run here: " + why);
  const double min_floats = minimum_saved_floats(s.model, s.hidden, s.input);
  std::string common = " --model " + shell_quote(s.model) + " --hidden " + std::to_string(s.hidden) +
                       " --batch " + std::to_string(s.batch) + " --input " + std::to_string(s.input) +
                       " --passes " + std::to_string(s.passes) + " --seed " + std::to_string(s.seed) +
                       " --precision " + s.precision;
  for (const std::string& f : plugin_options.files) common += " --plugin " + shell_quote(f);
  for (const std::string& d : plugin_options.directories) common += " --plugin-dir " + shell_quote(d);
  const std::string self = boost::dll::program_location().string();

  std::printf("%-18s %8s %8s %14s %14s %12s %16s %14s\n", "trainer", "T", "updates", "tape peak MiB",
              "peak RSS MiB", "us / step", "steps x batch/s", "min saved MiB");
  json results = json::array();
  int failed = 0;
  for (std::size_t i = 0; i < specs.size(); ++i)
    for (std::int64_t steps : lengths) {
      const std::string command = shell_quote(self) + " bench-memory --child-trainer " +
                                  shell_quote(specs[i]) + " --child-steps " + std::to_string(steps) + common;
      std::string why;
      std::optional<json> result = run_in_child(command, why);
      if (!result) {
        std::printf("%-18s %8lld  failed (%s)\n", specs[i].c_str(), static_cast<long long>(steps),
                    why.c_str());
        ++failed;
        continue;
      }
      json& r = *result;
      r["trainer_index"] = i;
      r["minimum_saved_bytes_full"] = min_floats * 4.0 * static_cast<double>(s.batch * steps);
      std::printf("%-18s %8lld %8lld %14s %14s %12.1f %16.0f %14s\n", specs[i].c_str(),
                  static_cast<long long>(steps), static_cast<long long>(r["updates"].get<std::int64_t>()),
                  mib(r["tape_peak_bytes"].get<double>()).c_str(),
                  mib(r["peak_rss_bytes"].get<double>()).c_str(), r["us_per_step"].get<double>(),
                  r["steps_x_batch_per_second"].get<double>(),
                  mib(r["minimum_saved_bytes_full"].get<double>()).c_str());
      std::fflush(stdout);
      results.push_back(r);
    }
  std::printf(
      "min saved: the activations full BPTT must keep at the least, %.0f floats per row and step for %s\n",
      min_floats, s.model.c_str());
  std::string csv_for_plot = csv_path.empty() && !plot.empty() ? plot + ".csv" : csv_path;
  if (!csv_for_plot.empty()) write_csv(csv_for_plot, results, csv_path.empty() ? "--plot" : "--csv");
  if (!json_path.empty()) write_text_file(json_path, results.dump(2) + "\n", "--json");
  if (!plot.empty()) write_plot(plot, csv_for_plot, specs, s);
  if (failed > 0) {
    std::fprintf(stderr, "rewind bench-memory: %d configuration(s) failed\n", failed);
    return 1;
  }
  return 0;
}

}  // namespace rwd::cli
