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
#include "rewind/trainers/schedule.hpp"

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

// "truncated:20" -> ("truncated", {k: 20}); "truncated:5:25" -> k1, k2; "checkpointed:50" -> segment;
// "checkpointed:5%" or "checkpointed:50MiB" -> memory_budget; "snap1:20" -> k (rtrl, uoro, snap1).
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
  else if (parts[0] == "checkpointed" && parts.size() == 2 &&
           parts[1].find_first_not_of("0123456789") == std::string::npos)
    options["segment"] = parts[1];
  else if (parts[0] == "checkpointed" && parts.size() == 2)
    options["memory_budget"] = (trainers::parse_budget(parts[1], 100), parts[1]);  // refuses a bad one now
  else if ((parts[0] == "rtrl" || parts[0] == "uoro" || parts[0] == "snap1") && parts.size() == 2)
    options["k"] = parts[1];  // steps between updates
  else if (parts.size() != 1)
    throw std::invalid_argument("trainer spec '" + spec +
                                "': expected full, truncated:K, truncated:K1:K2, checkpointed[:C], "
                                "checkpointed:BUDGET (50MiB, 5%) or rtrl|uoro|snap1[:K]");
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

// T steps of random tokens, every one a target.
trainers::TokenData random_tokens(const BenchSetup& s, std::int64_t steps) {
  trainers::TokenData data(s.batch, steps, s.input);
  std::mt19937_64 rng(s.seed);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      data.input(t, b) = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(s.input));
      data.target(t, b) = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(s.input));
    }
  return data;
}

std::unique_ptr<models::Model> bench_model(const plugins::Registry& registry, const BenchSetup& s,
                                           const std::map<std::string, std::string>& options) {
  models::ModelConfig config;
  config.vocab_size = s.input;
  config.input_size = s.input;
  config.hidden_size = s.hidden;
  config.seed = s.seed;
  return registry.make_model(s.model, config, options);
}

json run_child(const plugins::Registry& registry, const BenchSetup& s, const std::string& trainer_spec,
               std::int64_t steps, const std::map<std::string, std::string>& model_options) {
  const auto [name, options] = parse_trainer(trainer_spec);
  const trainers::TokenData data = random_tokens(s, steps);
  auto model = bench_model(registry, s, model_options);
  auto trainer = registry.make_trainer(name, options);
  if (options.count("memory_budget")) {
    autodiff::Tape tape(model->config().dtype);
    const trainers::CheckpointCosts costs =
        trainers::measure_checkpoint_costs(*model, data, tape, model->initial_state(s.batch));
    const std::int64_t least = trainers::minimum_budget(steps, costs);
    if (trainers::parse_budget(options.at("memory_budget"), trainers::full_tape_bytes(steps, costs)) < least)
      return {{"trainer", trainer_spec}, {"steps", steps}, {"least_budget_bytes", least}};
  }
  const autodiff::MatmulPrecisionGuard products(s.precision == "bf16" ? autodiff::MatmulPrecision::bf16
                                                                      : autodiff::MatmulPrecision::f32);
  trainers::Optimizer sgd({.kind = "sgd", .lr = 1e-3});
  trainers::Loop loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return data; },
                      {.max_passes = s.passes});
  std::size_t tape_peak = 0;
  std::int64_t updates = 0, recorded = 0, held_peak = 0;
  const auto started = std::chrono::steady_clock::now();
  loop.run([&](const trainers::UpdateReport& r) {
    tape_peak = std::max(tape_peak, r.stats.tape.peak_bytes);
    held_peak = std::max({held_peak, r.stats.held_bytes, static_cast<std::int64_t>(r.stats.tape.peak_bytes)});
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
          {"held_peak_bytes", held_peak},
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

// What each child is given besides its trainer and T.
std::string child_arguments(const BenchSetup& s, const PluginOptions& plugin_options) {
  std::string common = " --model " + shell_quote(s.model) + " --hidden " + std::to_string(s.hidden) +
                       " --batch " + std::to_string(s.batch) + " --input " + std::to_string(s.input) +
                       " --passes " + std::to_string(s.passes) + " --seed " + std::to_string(s.seed) +
                       " --precision " + s.precision;
  for (const std::string& f : plugin_options.files) common += " --plugin " + shell_quote(f);
  for (const std::string& d : plugin_options.directories) common += " --plugin-dir " + shell_quote(d);
  for (const std::string& o : plugin_options.settings) common += " --option " + shell_quote(o);
  return common;
}

// A child's result as a table row: its figures, or a budget below the least plan's.
void print_row(const json& r, std::int64_t passes) {
  const std::string spec = r["trainer"].get<std::string>();
  const auto steps = r["steps"].get<std::int64_t>();
  if (r.contains("least_budget_bytes")) {
    std::printf("%-18s %8lld  below the least budget, %s MiB\n", spec.c_str(), static_cast<long long>(steps),
                mib(r["least_budget_bytes"].get<double>()).c_str());
    return;
  }
  std::printf("%-18s %8lld %8lld %14s %12s %14s %9.3f %12.1f %16.0f %14s\n", spec.c_str(),
              static_cast<long long>(steps), static_cast<long long>(r["updates"].get<std::int64_t>()),
              mib(r["tape_peak_bytes"].get<double>()).c_str(),
              mib(r["held_peak_bytes"].get<double>()).c_str(), mib(r["peak_rss_bytes"].get<double>()).c_str(),
              r["steps_recorded"].get<double>() / static_cast<double>(steps * passes),
              r["us_per_step"].get<double>(), r["steps_x_batch_per_second"].get<double>(),
              mib(r["minimum_saved_bytes_full"].get<double>()).c_str());
  std::fflush(stdout);
}

// The trade-off as one picture per T: time per step against the memory held at its highest, every trainer a
// point (the budgets of the optimal plan a line from the least memory to full BPTT's).
void write_budget_plot(const std::string& png, const std::string& csv, const std::vector<std::string>& specs,
                       const std::vector<std::int64_t>& lengths, const BenchSetup& s) {
  std::ostringstream gp;
  gp << "set datafile separator ','\nset key top right\nset grid\nset logscale x\n"
     << "set multiplot layout 1," << lengths.size() << " title '" << s.model << ", hidden " << s.hidden
     << ", batch " << s.batch << ": exact gradient within a memory budget, against full and truncated BPTT'\n"
     << "set xlabel 'tape and kept states at their highest (MiB)'\nset ylabel 'us per time step'\n";
  for (std::int64_t T : lengths) {
    gp << "set title 'T = " << T << "'\nplot '" << csv << "' using ($3 == " << T
       << " && strstrt(strcol(2), '%') > 0 ? $9/1048576 : 1/0):7 with linespoints lw 2 title 'optimal plan "
          "(budgets)'";
    for (std::size_t i = 0; i < specs.size(); ++i)
      if (specs[i].find('%') == std::string::npos)
        gp << ", '' using ($1 == " << i << " && $3 == " << T << " ? $9/1048576 : 1/0):7 with points pt "
           << 5 + i << " ps 2 title '" << specs[i] << "'";
    gp << "\n";
  }
  gp << "unset multiplot\n";
  render_gnuplot(png, std::to_string(700 * lengths.size()) + ",560", gp.str());
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
         "steps_x_batch_per_second,held_peak_bytes,steps_recorded\n";
  for (const json& r : results)
    csv << r["trainer_index"] << ',' << r["trainer"].get<std::string>() << ',' << r["steps"] << ','
        << r["tape_peak_bytes"] << ',' << r["peak_rss_bytes"] << ',' << r["minimum_saved_bytes_full"] << ','
        << r["us_per_step"] << ',' << r["steps_x_batch_per_second"] << ',' << r["held_peak_bytes"] << ','
        << r["steps_recorded"] << '\n';
  write_text_file(path, csv.str(), option);
}

}  // namespace

int run_bench_memory(int argc, const char* const* argv) {
  BenchSetup s;
  PluginOptions plugin_options;
  std::string seq = "100,1000,10000", trainer_list = "full,truncated:20,checkpointed", csv_path, json_path,
              plot;
  std::string child_trainer, budgets;
  std::int64_t child_steps = 0;
  po::options_description options("rewind bench-memory options");
  options.add_options()("help,h", "show this help")("model", po::value(&s.model)->default_value(s.model),
                                                    "model plugin")(
      "seq", po::value(&seq)->default_value(seq), "sequence lengths T, comma-separated")(
      "trainers", po::value(&trainer_list)->default_value(trainer_list),
      "full, truncated:K1[:K2], checkpointed[:C] (C steps between kept states), checkpointed:BUDGET (50MiB, "
      "5% of full's tape: the optimal plan), rtrl|uoro|snap1[:K] (K steps per update), comma-separated")(
      "budgets", po::value(&budgets),
      "memory budgets to sweep with the checkpointed trainer's optimal plan (e.g. 1%,2%,5%,10%,25%), "
      "after --trainers; --plot then draws time per step against peak memory")(
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
    std::cout << run_child(registry, s, child_trainer, child_steps, plugin_options.option_map()).dump()
              << std::endl;
    return 0;
  }

  std::vector<std::string> specs = split_list(trainer_list);
  for (const std::string& budget : split_list(budgets)) specs.push_back("checkpointed:" + budget);
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
  const std::string common = child_arguments(s, plugin_options);
  const std::string self = boost::dll::program_location().string();

  std::printf("%-18s %8s %8s %14s %12s %14s %9s %12s %16s %14s\n", "trainer", "T", "updates", "tape peak MiB",
              "held MiB", "peak RSS MiB", "fwd/step", "us / step", "steps x batch/s", "min saved MiB");
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
      if (!r.contains("least_budget_bytes")) {
        r["trainer_index"] = i;
        r["minimum_saved_bytes_full"] = min_floats * 4.0 * static_cast<double>(s.batch * steps);
        results.push_back(r);
      }
      print_row(r, s.passes);
    }
  std::printf(
      "held: tape and kept states at their highest together; fwd/step: forward steps run per step (1: no "
      "recomputation)\nmin saved: the activations full BPTT must keep at the least, %.0f floats per row and "
      "step for %s\n",
      min_floats, s.model.c_str());
  std::string csv_for_plot = csv_path.empty() && !plot.empty() ? plot + ".csv" : csv_path;
  if (!csv_for_plot.empty()) write_csv(csv_for_plot, results, csv_path.empty() ? "--plot" : "--csv");
  if (!json_path.empty()) write_text_file(json_path, results.dump(2) + "\n", "--json");
  if (!plot.empty() && budgets.empty()) write_plot(plot, csv_for_plot, specs, s);
  if (!plot.empty() && !budgets.empty()) write_budget_plot(plot, csv_for_plot, specs, lengths, s);
  if (failed > 0) {
    std::fprintf(stderr, "rewind bench-memory: %d configuration(s) failed\n", failed);
    return 1;
  }
  return 0;
}

std::string bytes_text(std::int64_t bytes) {
  char buf[32];
  if (bytes >= (1 << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  else if (bytes >= (1 << 10))
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / (1 << 10));
  else
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  return buf;
}

json plan_json(const trainers::CheckpointPlan& p) {
  return {{"forward_steps", p.forward_steps}, {"recomputed_steps", p.recomputed_steps()},
          {"peak_bytes", p.peak_bytes},       {"max_kept", p.max_kept},
          {"reversals", p.reversals},         {"longest_reversal", p.longest_reversal},
          {"granularity", p.granularity}};
}

json costs_json(const trainers::CheckpointCosts& c) {
  return {{"state_bytes", c.state_bytes},
          {"fixed_bytes", c.fixed_bytes},
          {"step_bytes", c.step_bytes},
          {"advance_fixed_bytes", c.advance_fixed_bytes},
          {"advance_step_bytes", c.advance_step_bytes},
          {"full_fixed_bytes", c.full_fixed_bytes},
          {"full_step_bytes", c.full_step_bytes}};
}

// One T's plan beside full BPTT and sqrt(T) segments; its figures, or nothing for a budget below the least.
std::optional<json> print_plan(std::int64_t steps, const trainers::CheckpointCosts& costs,
                               const std::string& budget, bool show_actions) {
  const std::int64_t full = trainers::full_tape_bytes(steps, costs);
  const std::int64_t bytes = trainers::parse_budget(budget, full);
  std::printf("T = %lld\n", static_cast<long long>(steps));
  if (const std::int64_t least = trainers::minimum_budget(steps, costs); bytes < least) {
    std::printf("  budget %s is below the least plan's %s (%.2f%% of full BPTT's tape)\n",
                bytes_text(bytes).c_str(), bytes_text(least).c_str(),
                100.0 * static_cast<double>(least) / static_cast<double>(full));
    return std::nullopt;
  }
  const trainers::CheckpointPlan plan = trainers::optimal_checkpoints(steps, costs, bytes);
  const auto sqrt_segment = static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(steps))));
  const trainers::CheckpointPlan uniform = trainers::uniform_checkpoints(steps, sqrt_segment, costs);
  auto row = [&](const std::string& name, std::int64_t peak, std::int64_t forward) {
    std::printf("  %-28s peak %12s  forward steps %9lld (%.3f per step)\n", name.c_str(),
                bytes_text(peak).c_str(), static_cast<long long>(forward),
                static_cast<double>(forward) / static_cast<double>(steps));
  };
  row("full BPTT", full, steps);
  row("checkpointed, segment " + std::to_string(sqrt_segment), uniform.peak_bytes, uniform.forward_steps);
  row("budget " + bytes_text(bytes), plan.peak_bytes, plan.forward_steps);
  const std::string grid = plan.granularity == 1
                               ? "optimal"
                               : "optimal with states kept every " + std::to_string(plan.granularity) +
                                     " steps (T is long for the programme over single steps)";
  std::printf(
      "  the plan: %lld recomputed steps, at most %lld states kept, %lld reversals of at most %lld "
      "steps; %s\n",
      static_cast<long long>(plan.recomputed_steps()), static_cast<long long>(plan.max_kept),
      static_cast<long long>(plan.reversals), static_cast<long long>(plan.longest_reversal), grid.c_str());
  if (show_actions)
    for (const trainers::CheckpointAction& a : plan.actions)
      std::printf("    %s\n", trainers::describe(a).c_str());
  return json{{"steps", steps},
              {"budget_bytes", bytes},
              {"full_tape_bytes", full},
              {"plan", plan_json(plan)},
              {"sqrt_segments", plan_json(uniform)}};
}

int run_plan(int argc, const char* const* argv) {
  BenchSetup s;
  PluginOptions plugin_options;
  std::string seq = "1000", budget, json_path;
  bool show_actions = false;
  po::options_description options("rewind plan options");
  options.add_options()("help,h", "show this help")("model", po::value(&s.model)->default_value(s.model),
                                                    "model plugin")(
      "seq", po::value(&seq)->default_value(seq), "sequence lengths T, comma-separated")(
      "memory-budget", po::value(&budget)->required(),
      "bytes for kept states and tape (50MiB, 2GiB, 123) or a percentage of full BPTT's tape (5%)")(
      "hidden", po::value(&s.hidden)->default_value(s.hidden), "hidden size")(
      "batch", po::value(&s.batch)->default_value(s.batch), "batch rows")(
      "input", po::value(&s.input)->default_value(s.input), "embedding size = vocabulary")(
      "actions", po::bool_switch(&show_actions), "print the plan's actions")(
      "json", po::value(&json_path), "write the plans' figures as JSON");
  plugin_options.add_to(options);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm,
                          "usage: rewind plan --model lstm --hidden 256 --seq 1000 --memory-budget 50MiB"))
    return 0;
  std::vector<std::int64_t> lengths;
  for (const std::string& t : split_list(seq)) {
    lengths.push_back(parse_integer(t, "--seq"));
    if (lengths.back() < 1) throw std::invalid_argument("--seq: lengths must be positive, got " + t);
  }
  const plugins::Registry registry = plugin_options.load(true);
  auto model = bench_model(registry, s, plugin_options.option_map());
  // A step costs the same wherever it is: the first few measure every one.
  const trainers::TokenData data = random_tokens(s, 8);
  autodiff::Tape tape(model->config().dtype);
  const trainers::CheckpointCosts costs =
      trainers::measure_checkpoint_costs(*model, data, tape, model->initial_state(s.batch));
  std::printf("%s, hidden %lld, batch %lld, input %lld\n", s.model.c_str(), static_cast<long long>(s.hidden),
              static_cast<long long>(s.batch), static_cast<long long>(s.input));
  std::printf(
      "measured: full BPTT's tape %s + %s per step; a reversal's %s + %s per step; an advance's %s + %s "
      "per step; a kept state %s\n",
      bytes_text(costs.full_fixed_bytes).c_str(), bytes_text(costs.full_step_bytes).c_str(),
      bytes_text(costs.fixed_bytes).c_str(), bytes_text(costs.step_bytes).c_str(),
      bytes_text(costs.advance_fixed_bytes).c_str(), bytes_text(costs.advance_step_bytes).c_str(),
      bytes_text(costs.state_bytes).c_str());
  json plans = json::array();
  int refused = 0;
  for (std::int64_t steps : lengths) {
    if (std::optional<json> plan = print_plan(steps, costs, budget, show_actions))
      plans.push_back(*plan);
    else
      ++refused;
  }
  if (!json_path.empty()) {
    const json doc = {{"model", s.model}, {"hidden", s.hidden},         {"batch", s.batch},
                      {"input", s.input}, {"costs", costs_json(costs)}, {"plans", plans}};
    write_text_file(json_path, doc.dump(2) + "\n", "--json");
  }
  return refused > 0 ? 1 : 0;
}

}  // namespace rwd::cli
