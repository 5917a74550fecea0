#!/usr/bin/env bash
# Mutation check of the test suite: plants one known bug at a time in a scratch copy of the source tree,
# rebuilds it incrementally, runs the tests that should notice, and reports each mutant as killed (a test
# failed) or survived (every test passed). Exits non-zero if any mutant survives or does not apply.
#
#   scripts/mutants.sh [NAME-REGEX]        run every mutant, or those whose name matches
#   scripts/mutants.sh --list              list the mutants
#
# REWIND_MUTANTS_DIR (default: $TMPDIR/rewind-mutants) keeps the scratch copy and its build between runs, so
# a second run only recompiles what changed. Details and how to add a mutant: docs/testing.md.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${REWIND_MUTANTS_DIR:-${TMPDIR:-/tmp}/rewind-mutants}
jobs=${REWIND_MUTANTS_JOBS:-2}

names=() files=() originals=() replacements=() tests=()
# mutant NAME FILE ORIGINAL REPLACEMENT TESTS: ORIGINAL must occur exactly once in FILE (several lines are
# fine); TESTS is a ctest -R regular expression naming the tests that should fail.
mutant() {
  names+=("$1") files+=("$2") originals+=("$3") replacements+=("$4") tests+=("$5")
}

# Test groups (ctest names: Catch test case names and the cli.* tests).
optim='torch|clipping|step decay|SGD|loop update'
trainers='brute|carried|reset|trainer|loop|CSV|evaluation|sampling|cli\.train\.(task|layers|memory_budget)'
evaluation='evaluation|sampling|cli\.(sample|eval)$|cli\.train\.(task|text)$'
ops='gradient|gradcheck|window run|equations|cells|float windows'

# ---- the planted bugs of issue 16 -------------------------------------------------------------------------
mutant model.end.layers_reversed models/src/model.cpp \
  '  for (const State& s : state)
    for (const Var& v : s) v.copy_to(carried[next++]);' \
  '  for (auto s = state.rbegin(); s != state.rend(); ++s)
    for (const Var& v : *s) v.copy_to(carried[next++]);' \
  "$trainers"
mutant sample.temperature_multiplies trainers/src/evaluate.cpp \
  'weights[c] = std::exp((logits.get(static_cast<std::int64_t>(c)) - peak) / temperature);' \
  'weights[c] = std::exp((logits.get(static_cast<std::int64_t>(c)) - peak) * temperature);' \
  "$evaluation"
mutant sample.feeds_back_prime trainers/src/evaluate.cpp \
  'const std::int32_t token = i < prime.size() ? prime[i] : next;' \
  'const std::int32_t token = i < prime.size() ? prime[i] : prime.back();' \
  "$evaluation"
mutant evaluate.drops_carried_state trainers/src/evaluate.cpp \
  '.saved = &carried});' \
  '.saved = nullptr});' \
  "$evaluation"
mutant evaluate.count_plus_one trainers/src/evaluate.cpp \
  'e.loss = e.count > 0 ? total / static_cast<double>(e.count) : 0.0;' \
  'e.loss = e.count > 0 ? total / static_cast<double>(e.count + 1) : 0.0;' \
  "$evaluation"
mutant adam.second_correction_beta1 trainers/src/optim.cpp \
  'const double c2 = 1 - std::pow(c.beta2, static_cast<double>(updates_));' \
  'const double c2 = 1 - std::pow(c.beta1, static_cast<double>(updates_));' \
  "$optim"
mutant adam.no_bias_correction trainers/src/optim.cpp \
  'const T step_size = static_cast<T>(lr / c1), root_c2 = static_cast<T>(std::sqrt(c2)),' \
  'const T step_size = static_cast<T>(lr + 0 * c1), root_c2 = static_cast<T>(1 + 0 * c2),' \
  "$optim"
mutant clip.factor_inverted trainers/src/optim.cpp \
  'const double factor = max_norm / norm;' \
  'const double factor = norm / max_norm;' \
  "$optim"
mutant sgd.momentum_ignored trainers/src/optim.cpp \
  'wv[k] -= static_cast<T>(lr) * (c.nesterov ? gk + mu * buf[k] : buf[k]);' \
  'wv[k] -= static_cast<T>(lr) * (c.nesterov ? gk + mu * buf[k] : gk);' \
  "$optim"
mutant schedule.modulo trainers/src/optim.cpp \
  'static_cast<double>(updates_ / c.step_every)' \
  'static_cast<double>(updates_ % c.step_every)' \
  "$optim"
mutant safetensors.reversed_offsets_accepted models/src/safetensors.cpp \
  'if (offsets[0] > offsets[1])' \
  'if (false)' \
  'safetensors'

# ---- more: optimiser, ops' backward formulas, window arithmetic, resets, the arena, the loader ---------------
mutant adam.eps_inside_sqrt trainers/src/optim.cpp \
  'wv[k] -= step_size * m[k] / (std::sqrt(v[k]) / root_c2 + eps);' \
  'wv[k] -= step_size * m[k] / std::sqrt(v[k] / (root_c2 * root_c2) + eps);' \
  "$optim"
mutant ops.tanh_backward autodiff/src/ops_elementwise.cpp \
  'backward_unary<T>(tape, n, [](T, T y) { return T(1) - y * y; });' \
  'backward_unary<T>(tape, n, [](T, T y) { return T(1) - y; });' \
  "$ops"
mutant ops.sigmoid_backward autodiff/src/ops_elementwise.cpp \
  'backward_unary<T>(tape, n, [](T, T y) { return y * (T(1) - y); });' \
  'backward_unary<T>(tape, n, [](T, T y) { return y * (T(1) + y); });' \
  "$ops"
mutant ops.gather_overwrites autodiff/src/ops.cpp \
  'gt[indices[i] * cols + c] += dy[i * cols + c];' \
  'gt[indices[i] * cols + c] = dy[i * cols + c];' \
  "$ops|$trainers"
mutant ops.softmax_target_sign autodiff/src/ops.cpp \
  'if (counted) dr[targets[r]] -= g;' \
  'if (counted) dr[targets[r]] += g;' \
  "$ops|brute"
mutant ops.mse_second_input autodiff/src/ops.cpp \
  'if (gb != nullptr) gb[i] -= d;' \
  'if (gb != nullptr) gb[i] += d;' \
  "$ops"
mutant truncated.next_start_past_the_end trainers/src/trainer.cpp \
  'std::max<std::int64_t>(0, std::min(end + next_k1, steps_) - next_k2)' \
  'std::max<std::int64_t>(0, end + next_k1 - next_k2)' \
  "$trainers"
mutant checkpointed.floor_sqrt trainers/builtin/checkpointed.cpp \
  'static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(steps_))))' \
  'static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(steps_))))' \
  'brute'
mutant window.end_state_not_saved trainers/src/trainer.cpp \
  'if (w.saved != nullptr && w.save_step == w.end && w.end > w.begin) model.end(state, *w.saved);' \
  'if (w.saved != nullptr && w.save_step == w.end && w.end < w.begin) model.end(state, *w.saved);' \
  "$trainers"
mutant window.resets_ignored trainers/src/trainer.cpp \
  '    if (s.reset.empty()) continue;
    resets.resize(static_cast<std::size_t>(rows));' \
  '    if (s.reset.empty() || rows > 0) continue;
    resets.resize(static_cast<std::size_t>(rows));' \
  "$trainers"
mutant window.counts_ignored_targets trainers/src/trainer.cpp \
  'for (std::int32_t target : s.target_tokens) count += target != no_target;' \
  'for (std::int32_t target : s.target_tokens) count += target >= no_target;' \
  "$trainers"
mutant cell.reset_keeps_half models/src/model.cpp \
  'restarts[static_cast<std::size_t>(b)] != 0 ? 0.0 : 1.0);' \
  'restarts[static_cast<std::size_t>(b)] != 0 ? 0.5 : 1.0);' \
  'window run|reset'
mutant loop.clip_ignored trainers/src/loop.cpp \
  'options_.clip > 0 ? clip_grad_norm(params, options_.clip) : clip_grad_norm(params, INFINITY);' \
  'clip_grad_norm(params, INFINITY);' \
  "$trainers"
mutant loop.one_update_too_many trainers/src/loop.cpp \
  'if (options_.max_updates > 0 && optimizer_.updates() >= options_.max_updates) return;' \
  'if (options_.max_updates > 0 && optimizer_.updates() > options_.max_updates) return;' \
  "$trainers"
mutant arena.reset_keeps_large_cursor autodiff/src/arena.cpp \
  '  offset_ = 0;
  next_large_ = 0;' \
  '  offset_ = 0;' \
  'arena|allocation'
mutant arena.no_alignment autodiff/src/arena.cpp \
  'const std::size_t start = align_up(offset_, align);' \
  'const std::size_t start = offset_;' \
  'arena|allocation'
mutant registry.empty_name_accepted plugins/src/registry.cpp \
  "if (d.name == nullptr || *d.name == '\\0') throw" \
  'if (d.name == nullptr) throw' \
  'plugin'

# ---- the defects of issue 15 (hardening), each with the regression test that failed before its fix ----------

mutant fast_math.tanh_polynomial_unclamped autodiff/src/fast_math.hpp \
  'const float xs = x < -0.625f ? -0.625f : (x > 0.625f ? 0.625f : x);' \
  'const float xs = x;' \
  'every binade of float'
mutant fast_math.exp_clamped_at_88 autodiff/src/fast_math.hpp \
  'const float xc = x < lowest ? lowest : (x > 89.0f ? 89.0f : x);' \
  'const float xc = x < lowest ? lowest : (x > 88.3f ? 88.3f : x);' \
  'float exp is inf'
mutant loop.steps_without_targets trainers/src/loop.cpp \
  'const bool counted = report.stats.loss_count > 0;' \
  'const bool counted = true;' \
  'without counted targets|without any target'
mutant tape.param_trusts_gradient_shape autodiff/src/tape.cpp \
  'if (p.grad().shape() != value.shape() || p.grad().dtype() != value.dtype())' \
  'if (false)' \
  'Tape::param checks'
mutant tape.nonfinite_skips_overwritten autodiff/src/tape.cpp \
  'if (owner == n && n->value_was_nonfinite) return describe(n);' \
  '(void)owner;' \
  'first_nonfinite names'
mutant arena.large_blocks_stack autodiff/src/arena.cpp \
  '    if (smallest != large_.size()) {' \
  '    if (false) {' \
  'arena'
mutant resume.accepts_run_options cli/train.cpp \
  'if (!value.defaulted() && !allowed.count(name))' \
  'if (false)' \
  'cli\.hardening'
mutant eval.validation_batch_follows_training runtime/src/run_config.cpp \
  'out.validation = streams_of(rest, config.token_count(), validation_streams, config.data);' \
  'out.validation = streams_of(rest, config.token_count(), config.batch, config.data);' \
  'cli\.hardening'
mutant adamw.decay_coupled trainers/src/optim.cpp \
  'const T l2 = c.kind == "adamw" ? T(0) : static_cast<T>(c.weight_decay);' \
  'const T l2 = static_cast<T>(c.weight_decay);' \
  'adamw with decoupled decay'
mutant schedule.cosine_without_warmup trainers/src/optim.cpp \
  'if (updates_ < c.warmup) return c.lr * (u + 1) / static_cast<double>(c.warmup);' \
  'if (updates_ < c.warmup) return c.lr;' \
  'cosine schedule'
mutant dropout.backward_unmasked autodiff/src/ops_random.cpp \
  'static_cast<T>(n->scalar), dy_of<T>(n), gx, true);' \
  'static_cast<T>(1), dy_of<T>(n), gx, true);' \
  'dropout|gradcheck'
mutant csv.quotes_not_stripped trainers/src/csv.cpp \
  '      quoted = was_quoted = true;
      current->clear();' \
  '      *current += ch;' \
  'CSV'

# ---- issue 12's update weighting and adaptive k2, and backward's seed check --------------------------------

mutant artbp.own_count_normalizer trainers/builtin/artbp.cpp \
  '.normalizer = mean_count_,' \
  '.normalizer = static_cast<double>(count_targets(data, first, end)),' \
  'artbp'
mutant loop.group_divides_by_count trainers/src/loop.cpp \
  'add_scaled(params[i]->grad(), 1 / group_.normalizer, group_gradients_[i]);' \
  'add_scaled(params[i]->grad(), 1 / count, group_gradients_[i]);' \
  'artbp|accumulat'
mutant adaptive.k2_is_k trainers/builtin/adaptive.cpp \
  'if (k2 - k1_for(k2) + 1 >= k) return k2;' \
  'if (k2 >= k) return k2;' \
  'adaptive'
mutant tape.seed_checked_by_count autodiff/src/tape.cpp \
  's.grad->shape() != n->shape ||' \
  's.grad->shape().numel() != n->shape.numel() ||' \
  'non-scalar needs a seed'

# ---- issue 22: lost work, broken examples, numerical edges, and the audit's survivors ---------------------
mutant keep.overwrites_foreign_file runtime/src/training.cpp \
  'return std::ranges::find(updates, update) == updates.end() &&' \
  'return false &&' \
  'cli\.train\.saves'
mutant keep.removes_what_it_did_not_write runtime/src/training.cpp \
  'for (std::int64_t old : updates)
      if (std::ranges::find(kept, old) == kept.end()) fs::remove(file(dir, old), ec);' \
  'for (const auto& entry : fs::directory_iterator(dir))
      if (entry.path().filename().string().rfind("checkpoint-", 0) == 0 &&
          entry.path().filename() != numbered.filename())
        fs::remove(entry.path(), ec);' \
  'cli\.train\.saves'
mutant resume.no_default_save cli/train.cpp \
  '    o.files.save = o.resume;
  }' \
  '  }' \
  'cli\.train\.saves'
mutant resume.drops_run_outputs cli/train.cpp \
  'run.config.outputs = resumed_outputs(run.outputs, o.outputs, vm);' \
  'run.config.outputs = o.outputs;' \
  'cli\.train\.saves'
mutant nonfinite.checks_gradients_too runtime/src/training.cpp \
  'if (files_.save.empty() || !trainers::first_nonfinite_value(model_->parameters()).empty() ||' \
  'if (files_.save.empty() || !trainers::first_nonfinite(model_->parameters()).empty() ||' \
  'cli\.train\.saves'
mutant readme.adaptive_without_k_min README.md \
  '--trainer-option k1=5 --trainer-option k_min=5 --trainer-option tolerance=0.01' \
  '--trainer-option k1=5 --trainer-option tolerance=0.01' \
  'cli\.readme'
mutant help.fixed_trainer_list cli/plugin_options.cpp \
  'return names.empty() ? "none found" : names;' \
  'return kind == plugins::Kind::trainer ? "full, truncated, checkpointed" : names;' \
  'cli\.hardening'
mutant vocab.cap_adds_unknown_beyond trainers/src/tokens.cpp \
  'if (static_cast<std::int64_t>(kept.size()) + (has_unknown ? 0 : 1) >= max_symbols) break;' \
  'if (static_cast<std::int64_t>(kept.size()) >= max_symbols) break;' \
  'words|cli\.tokens'
mutant vocab.held_out_refused trainers/src/tokens.cpp \
  '  if (skipped == 0) return as_unknown;' \
  '  if (true) return as_unknown;' \
  'held-out|cli\.tokens'
mutant vocab.test_data_not_covered runtime/src/run_config.cpp \
  'for (const std::string& f : {config.val_data, config.test_data})
        if (!f.empty()) files.push_back(f), texts.push_back(read_file(f));' \
  'for (const std::string& f : {config.val_data})
        if (!f.empty()) files.push_back(f), texts.push_back(read_file(f));' \
  'cli\.tokens'
mutant words.ascii_spaces_only trainers/src/tokens.cpp \
  'return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||' \
  'return (c >= 0x09 && c <= 0x0D) || c == 0x20 || (false && c == 0x1680) ||' \
  'Python'
mutant words.lone_cr_not_a_line_end trainers/src/tokens.cpp \
  'const std::size_t end = std::min(text.find_first_of("\r\n", i), text.size());' \
  'const std::size_t end = std::min(text.find_first_of("\n", i), text.size());' \
  'Python'
mutant trainer.k_with_k2_accepted cli/train.cpp \
  'if (c.trainer_options.count("k") &&' \
  'if (false && c.trainer_options.count("k") &&' \
  'cli\.train\.saves'
mutant data.fifo_opened trainers/src/data.cpp \
  '  if (S_ISREG(st.st_mode)) return;' \
  '  if (!S_ISDIR(st.st_mode)) return;' \
  'cli\.hardening'
mutant plugin.file_not_loaded runtime/src/run_config.cpp \
  '  registry.load_file(config.model_plugin_file);
}' \
  '}' \
  'cli\.train\.plugin_file'
mutant csv.too_few_rows_without_context runtime/src/run_config.cpp \
  '    if (split == rows) throw;' \
  '    throw;' \
  'cli\.hardening'
mutant metrics.every_update runtime/src/training.cpp \
  'log_every_ > 0 ? r.update % log_every_ == 0' \
  'log_every_ > 0 ? r.update % 1 == 0' \
  'cli\.train\.saves'
mutant metrics.no_final_line runtime/src/training.cpp \
  'void MetricsLog::finish() {
  write_updates();' \
  'void MetricsLog::finish() {' \
  'cli\.train\.saves'
mutant plot.wrote_twice cli/train.cpp \
  'if (!o.plot.empty()) plot_runs({run.outputs().metrics}, o.plot);' \
  'if (!o.plot.empty()) plot_runs({run.outputs().metrics}, o.plot), std::printf("wrote %s\n", o.plot.c_str());' \
  'cli\.train\.saves'
mutant div_scalar.reciprocal autodiff/src/ops_elementwise.cpp \
  'return unary(Op::div_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(v / c); });' \
  'return unary(Op::div_scalar, x, c, [c](auto v) { return static_cast<decltype(v)>(v * (1.0 / c)); });' \
  'subnormal'
mutant maximum.nan_gets_nothing autodiff/src/ops_elementwise.cpp \
  'return wins ? T(1) : tie ? T(0.5) : loses ? T(0) : T(1);' \
  'return wins ? T(1) : tie ? T(0.5) : loses ? T(0) : T(0);' \
  'maximum and minimum'
mutant softmax.infinite_max_shifted_by_zero autodiff/src/ops_reduce.cpp \
  '      const T shift = row_max(row, s.cols);
      for (std::int64_t c = 0; c < s.cols; ++c) out[c] = kernels::exp<T>(row[c] - shift);' \
  '      const T shift = logsumexp_shift(row, s.cols);
      for (std::int64_t c = 0; c < s.cols; ++c) out[c] = kernels::exp<T>(row[c] - shift);' \
  'holding \+inf'
mutant horizon.bias_without_lag_0 trainers/src/analysis.cpp \
  '  double total = tail;
  for (double n : norms) total += n;' \
  '  double total = tail - norms.front();
  for (double n : norms) total += n;' \
  'truncation bias|analyze horizon'
mutant horizon.fit_takes_zeros trainers/src/analysis.cpp \
  '    if (!(out.mean_norm[j] > 0)) continue;' \
  '    if (false) continue;' \
  'horizon fit'
mutant mpi.test_set_not_shared runtime/src/training.cpp \
  'const trainers::Dataset* test() { return held_out_share(text_.test.get(), "test", test_share_); }' \
  'const trainers::Dataset* test() { return text_.test.get(); }' \
  'cli\.train\.mpi'
mutant best.evaluations_since_not_restored runtime/src/training.cpp \
  'b.evaluations_since = std::stoll(meta.at("rewind.evaluations_since_best"));' \
  'b.evaluations_since = 0 * std::stoll(meta.at("rewind.evaluations_since_best"));' \
  'cli\.train\.saves'
mutant save_every_seconds.total_time runtime/src/training.cpp \
  '(out.save_every_seconds > 0 && World::any(r.seconds - last_save_ >= out.save_every_seconds))' \
  '(out.save_every_seconds > 0 && World::any(r.seconds >= out.save_every_seconds))' \
  'cli\.train\.saves'
mutant evaluate.training_mode trainers/src/evaluate.cpp \
  'Evaluation evaluate(Model& model, const Dataset& data, std::int64_t window) {
  autodiff::NoGradGuard no_grad;
  autodiff::EvalModeGuard eval_mode;' \
  'Evaluation evaluate(Model& model, const Dataset& data, std::int64_t window) {
  autodiff::NoGradGuard no_grad;' \
  'evaluation mode'
mutant ring.chunks_drop_remainder runtime/src/world.cpp \
  'for (int c = 0; c <= R; ++c) first[static_cast<std::size_t>(c)] = static_cast<int>(elements * c / R);' \
  'for (int c = 0; c <= R; ++c) first[static_cast<std::size_t>(c)] = static_cast<int>(elements / R * c);' \
  'cli\.train\.mpi'
mutant ring.receive_index_off_by_two runtime/src/world.cpp \
  'const auto receive = static_cast<std::size_t>((world_rank - step - 1 + 2 * R) % R);' \
  'const auto receive = static_cast<std::size_t>((world_rank - step - 3 + 2 * R) % R);' \
  'cli\.train\.mpi'
mutant combine.unweighted_mean runtime/src/world.cpp \
  '    loss_sum += all[at], count += all[at + 1], correct += all[at + 2];' \
  '    loss_sum += all[at] / std::max(all[at + 1], 1.0) * 1000, count += all[at + 1], correct += all[at + 2];
  loss_sum = loss_sum / 1000 / static_cast<double>(all.size() / 3) * count;' \
  'cli\.train\.mpi'
mutant dropout.step_loses_site models/src/model.cpp \
  '  return step(tape, drop(embedded, 0, state[0][0].shape().rows), state);' \
  '  return step(tape, drop(embedded, 7, state[0][0].shape().rows), state);' \
  'stepped one step'
mutant tokens.check_keeps_file_resident trainers/src/tokens.cpp \
  '    release(begin, end);
  }' \
  '  }' \
  'read in place'

# ---- issue 23: time series end to end -----------------------------------------------------------------------
series='series|CSV|transform|cli\.timeseries'
mutant series.transform_fitted_on_all_rows runtime/src/run_config.cpp \
  'if (config.transform.columns.empty()) config.transform.fit(frame, split);' \
  'if (config.transform.columns.empty()) config.transform.fit(frame, frame.rows());' \
  "$series"
mutant series.inverse_forgets_last_value runtime/include/rewind/runtime/series.hpp \
  'return difference ? previous + v : v;' \
  'return difference ? 0 * previous + v : v;' \
  "$series"
mutant series.change_across_a_reset runtime/src/series.cpp \
  'rows[r][c] = r == 0 || resets[r] ? 0.0 : rows[r][c] - rows[r - 1][c];' \
  'rows[r][c] = r == 0 ? 0.0 : rows[r][c] - rows[r - 1][c];' \
  "$series"
mutant series.filled_targets_scored runtime/src/series.cpp \
  'if (!f.has_target(r) || t < held_out.scored_from || !f.targets_known[t]) continue;' \
  'if (!f.has_target(r) || t < held_out.scored_from) continue;' \
  "$series"
mutant series.validation_scores_training_rows runtime/src/run_config.cpp \
  'out.validation = std::make_unique<HeldOutSeries>(HeldOutSeries{frame, split});' \
  'out.validation = std::make_unique<HeldOutSeries>(HeldOutSeries{frame, 0});' \
  "$series"
mutant csv.interpolate_as_ffill trainers/src/csv.cpp \
  '} else if (next == known.size() || missing == Missing::ffill) {' \
  '} else if (next == known.size() || missing != Missing::drop) {' \
  "$series"
mutant csv.keys_become_inputs trainers/src/csv.cpp \
  'if (c != reset_col && !listed(keys, c) && !(explicit_targets && listed(target_cols, c)))' \
  'if (c != reset_col && !(explicit_targets && listed(target_cols, c)))' \
  "$series"
mutant csv.keys_not_carried trainers/src/csv.cpp \
  'for (std::size_t c : keys) key.push_back(table.cells[r][c]);' \
  'for (std::size_t c : keys) key.push_back(table.cells[r][c] + "");
    key.clear();' \
  "$series"
mutant predictor.reset_ignored runtime/src/predictor.cpp \
  '  if (starts_sequence) {
    for (autodiff::Tensor& t : m.now.state) t.fill(0.0);' \
  '  if (false) {
    for (autodiff::Tensor& t : m.now.state) t.fill(0.0);' \
  "$series"
mutant predictor.forecast_without_feedback runtime/src/predictor.cpp \
  'x[i] = predicted[static_cast<std::size_t>(t)];' \
  'x[i] = 0 * predicted[static_cast<std::size_t>(t)];' \
  "$series"

# ---- issue 24: learning online ---------------------------------------------------------------------------
online='online|one-row'
mutant online.learns_before_target_known runtime/src/online.cpp \
  'if (!m.options.learn || m.counts.rows - 1 - m.position < m.options.k1) return false;' \
  'if (!m.options.learn || m.counts.rows - m.position < m.options.k1) return false;' \
  "$online"
mutant online.loss_across_a_reset runtime/src/online.cpp \
  'if (row > 0) m.ring.set_target(row - 1, m.target_z, !starts_sequence);' \
  'if (row > 0) m.ring.set_target(row - 1, m.target_z, true);' \
  "$online"
mutant online.save_without_optimizer runtime/src/online.cpp \
  '  for (const auto& [name, t] : m.optimizer.state(model.parameters())) tensors.emplace_back(name, t);' \
  '' \
  "$online"
mutant online.resume_forgets_last_row runtime/src/online.cpp \
  '    if (now.started) {' \
  '    if (false) {' \
  "$online"
mutant stream.line_appended_to_last runtime/src/stream.cpp \
  '    if (clear_next_) line_.clear(), clear_next_ = false;  // the line handed out last is done with' \
  '' \
  "$online"
mutant kernels.row_sums_swapped autodiff/src/kernels.hpp \
  '          const Float8 u = __builtin_shufflevector(t0, t1, 0, 1, 8, 9, 2, 3, 10, 11) +' \
  '          const Float8 u = __builtin_shufflevector(t0, t1, 1, 0, 8, 9, 2, 3, 10, 11) +' \
  "$online"
mutant infer.partial_step_kept models/src/model.cpp \
  '      state = std::move(before);' \
  '' \
  'infer'
mutant infer.lstm_reads_new_c models/builtin/lstm.cpp \
  '    autodiff::infer::lstm_pointwise(gi_, gh_, previous_, s[0], s[1]);' \
  '    autodiff::infer::lstm_pointwise(gi_, gh_, s[0], previous_, s[1]);' \
  'infer'
mutant latency.bucket_low_end runtime/src/online.cpp \
  '  return std::ldexp(top + 0.5, e);' \
  '  return std::ldexp(top, e);' \
  'latency percentiles'
mutant online.text_line_without_newline cli/online.cpp \
  "    text_ += '\\n';" \
  '' \
  'cli\.online\.tokens'
mutant online.token_accuracy_inverted runtime/src/online.cpp \
  't->correct += best == actual;' \
  't->correct += best != actual;' \
  'online'
mutant online.token_target_of_the_same_step runtime/src/online.cpp \
  '  if (step > 0) m.ring.set_target_token(step - 1, starts_sequence ? trainers::no_target : token);' \
  '  if (step > 0) m.ring.set_target_token(step - 1, starts_sequence ? trainers::no_target : token - 1);' \
  'cli\.online\.tokens'
mutant denormals.workers_keep_their_mode autodiff/src/parallel.cpp \
  "    if (float_mode() != mode_) set_float_mode(mode_);  // a worker takes the caller's (flushing denormals)" \
  '' \
  'FlushDenormalsGuard'
mutant denormals.training_keeps_them runtime/src/training.cpp \
  '  const autodiff::FlushDenormalsGuard denormals(config_.flush_denormals);
  const RunOutputs& out = config_.outputs;' \
  '  const RunOutputs& out = config_.outputs;' \
  'denormals'

# ---- issue 25: bf16 products (they run, and can be killed, only on a CPU with AVX512_BF16) ---------------------
mutant bf16.rounds_ties_up autodiff/src/bf16_gemm.hpp \
  '  bits += 0x7fffu + ((bits >> 16) & 1u);' \
  '  bits += 0x8000u;' \
  'bf16'
mutant bf16.later_chunks_overwrite autodiff/src/bf16_gemm.cpp \
  '    const bool add = beta != 0 || k0 > 0;' \
  '    const bool add = beta != 0;' \
  'bf16'

# ---- issue 26: exact BPTT within a memory budget ----------------------------------------------------------
mutant plan.reversal_one_step_too_long trainers/src/schedule.cpp \
  '  return room < c.step_bytes ? 0 : room / std::max<std::int64_t>(1, c.step_bytes);' \
  '  return room < c.step_bytes ? 0 : room / std::max<std::int64_t>(1, c.step_bytes) + 1;' \
  'checkpoint plan'
mutant plan.advance_forgets_its_new_state trainers/src/schedule.cpp \
  '  const std::int64_t room = budget - c.advance_fixed_bytes - (j + 1) * c.state_bytes;' \
  '  const std::int64_t room = budget - c.advance_fixed_bytes - j * c.state_bytes;' \
  'checkpoint plan'
mutant plan.costs_without_carried_gradient trainers/src/schedule.cpp \
  '  costs.fixed_bytes += state_bytes;  // the gradient a reversal receives at its end, held beside the tape' \
  '' \
  'brute-force full BPTT|memory budget'
mutant plan.costs_measured_on_real_targets trainers/src/schedule.cpp \
  '  const EveryStepCounted data(real_data);' \
  '  const Dataset& data = real_data;' \
  'memory budget'
mutant plan.advance_without_carried_gradient trainers/src/schedule.cpp \
  '  costs.advance_fixed_bytes += state_bytes;  // advances after the first reversal carry its gradient too' \
  '' \
  'brute-force full BPTT|memory budget'
mutant checkpointed.end_gradient_dropped trainers/builtin/checkpointed.cpp \
  '        if (!end_grad.empty() && v.requires_grad()) seeds.push_back({v, &end_grad[k]});' \
  '        if (false && !end_grad.empty() && v.requires_grad()) seeds.push_back({v, &end_grad[k]});' \
  'brute-force full BPTT'
mutant checkpointed.plan_kept_across_lengths trainers/builtin/checkpointed.cpp \
  '    if (plan_ && plan_->steps == steps_) return *plan_;' \
  '    if (plan_) return *plan_;' \
  'memory budget'
mutant backward.seeds_at_once autodiff/src/tape.cpp \
  '    if (owner->has_backward && owner->grad == nullptr && value_dead_in_backward(owner->op))' \
  '    if (false && owner->has_backward && owner->grad == nullptr && value_dead_in_backward(owner->op))' \
  'final state takes no gradient buffer'
mutant resume.budget_beside_segment cli/train.cpp \
  '    run.config.trainer_options.erase("segment");' \
  '' \
  'cli\.plan$'
mutant plan.whole_sequence_as_a_reversal trainers/src/schedule.cpp \
  '    return t <= leaf_[static_cast<std::size_t>(j)] && !(j == 0 && t == n_);' \
  '    return t <= leaf_[static_cast<std::size_t>(j)];' \
  'checkpoint plan|bitwise full BPTT'
mutant f64.weight_rows_in_one_product autodiff/src/kernels.hpp \
  '  if constexpr (!window_invariant<T>) {
    gemm<T>(true, false, m, n, rows, a, lda, b, ldb, T(1), c);' \
  '  if constexpr (true) {
    gemm<T>(true, false, m, n, rows, a, lda, b, ldb, T(1), c);' \
  'bitwise full BPTT'
mutant f64.recurrent_steps_in_one_product autodiff/src/ops_sequence.cpp \
  '  if constexpr (window_invariant<T>) {' \
  '  if constexpr (false) {' \
  'bitwise full BPTT'
mutant f64.column_sums_first_row_first autodiff/src/kernels.hpp \
  '  for (std::int64_t r = rows - 1; r >= 0; --r) add_into(dst, src + r * ld, cols);' \
  '  for (std::int64_t r = 0; r < rows; ++r) add_into(dst, src + r * ld, cols);' \
  'bitwise full BPTT'
mutant f64.head_chunks_first_first autodiff/src/ops.cpp \
  '  for (std::int64_t first = (sx.rows - 1) / head_chunk_rows * head_chunk_rows; first >= 0;
       first -= head_chunk_rows) {' \
  '  for (std::int64_t first = 0; first < sx.rows; first += head_chunk_rows) {' \
  'bitwise full BPTT'
mutant f64.kernel_by_row_count autodiff/src/kernels.hpp \
  '  return window_invariant<T> || m >= gemm_min_packed_rows;' \
  '  return m >= gemm_min_packed_rows;' \
  'bitwise full BPTT'
mutant mse.stretch_mean_rescaled trainers/src/trainer.cpp \
  '    loss = autodiff::mse(y * tape.input(keep), tape.input(target), norm);' \
  '    loss = autodiff::scale(autodiff::mse(y * tape.input(keep), tape.input(target)),
                           static_cast<double>(target.numel()) / norm);' \
  'bitwise full BPTT'

# ---- issue 27: forward mode -------------------------------------------------------------------------------
jvp='tangents of every op|jvp: the tangent|cli\.gradcheck\.forward'
mutant jvp.matmul_without_b_term autodiff/src/ops.cpp \
  '  if (const T* t_b = t.of<T>(nb)) gemm<T>(ta, tb, m, nn, k, value_of<T>(na), lda, t_b, ldb, T(1), ty);' \
  '' \
  "$jvp"
mutant jvp.lstm_cell_state_forgotten autodiff/src/row_kernels.hpp \
  '    tc[j] = tf * c_prev[j] + (tc_prev != nullptr ? f[j] * tc_prev[j] : T(0)) + ti * g[j] + i[j] * tg;' \
  '    tc[j] = tf * c_prev[j] + ti * g[j] + i[j] * tg;' \
  "$jvp"
mutant jvp.gru_update_gate_sign autodiff/src/row_kernels.hpp \
  '    th[j] = (T(1) - z[j]) * tn + tz * (h_prev[j] - n[j]) + (th_prev != nullptr ? z[j] * th_prev[j] : T(0));' \
  '    th[j] = (T(1) - z[j]) * tn + tz * (n[j] - h_prev[j]) + (th_prev != nullptr ? z[j] * th_prev[j] : T(0));' \
  "$jvp"
mutant jvp.tangent_through_restarts autodiff/src/ops_sequence.cpp \
  '    return {p, step_state(tprev, n->resets, step, b, Rows{0, b}, h, tangent_masked.data() + which * b * h)};' \
  '    return {p, tprev};' \
  "$jvp"
mutant jvp.layer_norm_mean_kept autodiff/src/ops_norm.cpp \
  '      if (tx != nullptr) d += gain[c] * rstd * (tx[r * s.cols + c] - mean_t - xhat * mean_xhat_t);' \
  '      if (tx != nullptr) d += gain[c] * rstd * (tx[r * s.cols + c] - xhat * mean_xhat_t);' \
  "$jvp"
mutant jvp.no_grad_nodes_carry_tangents autodiff/src/tape.cpp \
  '    if (n->has_backward && t.reaches(n)) run_jvp(*this, t, n);' \
  '    if (t.reaches(n)) run_jvp(*this, t, n);' \
  "$jvp"
online='rtrl|uoro|brute-force full BPTT|cli\.train\.resume'
mutant rtrl.influence_not_carried trainers/builtin/rtrl.cpp \
  '        for (std::size_t i = 0; i < states_; ++i) influence_block(stored_[states_ + i], k, out[i], false);' \
  '' \
  "$online"
mutant uoro.signs_scaled_as_theta trainers/builtin/uoro.cpp \
  '          theta[offset + i] = theta[offset + i] * keep + static_cast<T>(g[i]) * add;' \
  '          theta[offset + i] = theta[offset + i] * keep + static_cast<T>(g[i]) * keep;' \
  "$online"
mutant uoro.same_signs_every_step trainers/builtin/uoro.cpp \
  '          v[e] = static_cast<std::remove_reference_t<decltype(*v)>>(sign(seed_, t, element++));' \
  '          v[e] = static_cast<std::remove_reference_t<decltype(*v)>>(sign(seed_, 0, element++));' \
  "$online"
mutant uoro.state_jacobian_dropped trainers/builtin/uoro.cpp \
  '        for (std::int64_t e = 0; e < n; ++e) s[e] = static_cast<T>(rho0 * js[e] + rho1 * v[e]);' \
  '        for (std::int64_t e = 0; e < n; ++e) s[e] = static_cast<T>(0 * js[e] + rho1 * v[e]);' \
  "$online"
mutant online.gradients_not_zeroed_per_update trainers/builtin/online_gradient.hpp \
  '    zero_gradients(model);' \
  '' \
  "$online"
snap1='SnAp-1|cli\.train\.resume'
mutant snap1.lstm_carry_drops_the_cell_state trainers/builtin/snap1.cpp \
  '          m0[j] = a00 * h + a01 * c + c0 * x[j];' \
  '          m0[j] = a00 * h + c0 * x[j];' \
  "$snap1"
mutant snap1.gru_hidden_n_without_reset_gate trainers/builtin/snap1.cpp \
  '            ch[k * hidden] = k == 2 ? d[k] * reset_gate : d[k];' \
  '            ch[k * hidden] = d[k];' \
  "$snap1"
mutant snap1.unit_of_element_not_row trainers/builtin/snap1.cpp \
  '    if (by_unit) return {static_cast<std::size_t>(s), (e / width) % hidden};' \
  '    if (by_unit) return {static_cast<std::size_t>(s), e % hidden};' \
  "$snap1"
mutant snap1.restart_keeps_influence trainers/builtin/snap1.cpp \
  '          std::fill_n(m.data<T>() + b * m.shape().cols, m.shape().cols, T(0));' \
  '' \
  "$snap1"
mutant snap1.carried_influence_not_in_gradient trainers/builtin/snap1.cpp \
  '      for (const Carried& c : carried_) add_carried_gradient(model, c, q);' \
  '' \
  "$snap1"
mutant snap1.closed_form_drops_direct_gradient trainers/builtin/snap1.cpp \
  '          g[j] += d * x[j] + q0 * h + q1 * c;' \
  '          g[j] += q0 * h + q1 * c;' \
  "$snap1"
mutant snap1.lstm_cell_state_gradient_dropped trainers/builtin/snap1.cpp \
  '          if (lstm) qb[hidden] = restarted ? T(0) : grad_h * A[1];' \
  '          if (lstm) qb[hidden] = 0;' \
  "$snap1"
mutant snap1.gru_state_gradient_without_z trainers/builtin/snap1.cpp \
  '(lstm ? T(0) : grad_h * g.gates.data<T>()[b * rows + hidden + i]);' \
  '(lstm ? T(0) : T(0));' \
  "$snap1"
mutant snap1.embedding_gradient_dropped trainers/builtin/snap1.cpp \
  '      for (std::int64_t j = 0; j < width; ++j) row[j] += dx.data<T>()[b * width + j];' \
  '' \
  "$snap1"
mutant sequence.unpacked_w_hh_overwrites autodiff/src/ops_sequence.cpp \
  'kernels::row_gemm(forward, n, k, a + r * lda, unpacked, forward ? k : n, add ? T(1) : T(0),' \
  'kernels::row_gemm(forward, n, k, a + r * lda, unpacked, forward ? k : n, T(0),' \
  "$ops|$trainers"
mutant row_gemm.four_rows_drops_one autodiff/src/kernels.hpp \
  'for (std::int64_t j = 0; j < n; ++j) out[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j];' \
  'for (std::int64_t j = 0; j < n; ++j) out[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j];' \
  "$ops|$trainers|inference"

if [ "${1:-}" = "--list" ]; then
  for i in "${!names[@]}"; do printf '%-40s %s\n' "${names[$i]}" "${files[$i]}"; done
  exit 0
fi
filter=${1:-.}

# The scratch copy: the repository's files as they are now (committed or not), copied only where they differ,
# so the build directory's timestamps stay valid between runs.
mkdir -p "$scratch/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
  while IFS= read -r -d '' f; do
    [ -f "$repo/$f" ] || continue
    if ! cmp -s "$repo/$f" "$scratch/src/$f"; then
      mkdir -p "$(dirname "$scratch/src/$f")"
      cp "$repo/$f" "$scratch/src/$f"  # a new modification time: the build recompiles it
    fi
  done
build="$scratch/build"
log="$scratch/log"
mkdir -p "$log"
# Without -Werror: a mutant may leave an unused variable behind and must still build.
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$scratch/src" -B "$build" -DCMAKE_BUILD_TYPE=Release > "$log/configure.txt" 2>&1 ||
    { echo "configure failed: $log/configure.txt"; exit 2; }
fi
echo "building the unmutated tree in $build (the first time takes minutes)"
nice -n 15 cmake --build "$build" -j"$jobs" > "$log/build.txt" 2>&1 || { echo "build failed: $log/build.txt"; exit 2; }

killed=0 survived=0 unapplied=0 broken=0
survivors=()
for i in "${!names[@]}"; do
  name=${names[$i]} file=${files[$i]} original=${originals[$i]} replacement=${replacements[$i]}
  [[ $name =~ $filter ]] || continue
  target="$scratch/src/$file"
  content=$(cat "$repo/$file" 2>/dev/null; printf x)
  content=${content%x}
  after=${content#*"$original"}
  if [ ! -f "$repo/$file" ] || [ "$after" = "$content" ]; then
    printf '%-40s mutant does not apply (snippet not found in %s)\n' "$name" "$file"
    unapplied=$((unapplied + 1)) survivors+=("$name")
    continue
  fi
  if [[ $after == *"$original"* ]]; then
    printf '%-40s mutant does not apply (snippet found more than once in %s)\n' "$name" "$file"
    unapplied=$((unapplied + 1)) survivors+=("$name")
    continue
  fi
  printf '%s' "${content%%"$original"*}$replacement$after" > "$target"
  started=$SECONDS
  if ! nice -n 15 cmake --build "$build" -j"$jobs" > "$log/$name.build.txt" 2>&1; then
    printf '%-40s build failed (%s)\n' "$name" "$log/$name.build.txt"
    broken=$((broken + 1)) survivors+=("$name")
  elif ctest --test-dir "$build" -R "${tests[$i]}" -E 'example\.custom_cell' -j"$jobs" --timeout 300 \
      --stop-on-failure --no-tests=error > "$log/$name.tests.txt" 2>&1; then
    ran=$(grep -c 'Test *#' "$log/$name.tests.txt")
    printf '%-40s SURVIVED (%d tests passed, %ds; %s)\n' "$name" "$ran" $((SECONDS - started)) "$log/$name.tests.txt"
    survived=$((survived + 1)) survivors+=("$name")
  else
    failed=$(grep -m1 -E '\*\*\*' "$log/$name.tests.txt" | sed -E 's/.*Test +#[0-9]+: (.*[^ .]) *\.+ *\*\*\*.*/\1/')
    if [ "$(grep -c 'Test *#' "$log/$name.tests.txt")" -eq 0 ]; then
      printf '%-40s no test matches %s\n' "$name" "${tests[$i]}"
      broken=$((broken + 1)) survivors+=("$name")
    else
      printf '%-40s killed by %s (%ds)\n' "$name" "${failed:-a failing test}" $((SECONDS - started))
      killed=$((killed + 1))
    fi
  fi
  cp "$repo/$file" "$target"  # newer than the mutant's object file: the next build recompiles it
done

total=$((killed + survived + unapplied + broken))
echo "total: $total mutants, $killed killed, $survived survived, $unapplied did not apply, $broken did not build or ran no test"
if [ $((survived + unapplied + broken)) -gt 0 ]; then
  echo "not killed: ${survivors[*]}"
  exit 1
fi
