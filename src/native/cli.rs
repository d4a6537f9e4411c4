use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Arg, ArgMatches, Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use v1_predictor::backend::{self, BackendKind};
use v1_predictor::config::ConfigError;
use v1_predictor::config::flags::{self, FLAGS, Flag, Kind};
use v1_predictor::data::{self, Dataset};
use v1_predictor::explain::{self, Direction, Explainer, InversionConfig, Target};
use v1_predictor::model::ModelFamily;
use v1_predictor::results::{self, SavedNetwork};
use v1_predictor::training::ridge::fit_gabor_ridge;
use v1_predictor::training::{PRESETS, Trainer, TrainingConfig};

#[derive(Parser)]
#[command(
    name = "v1p",
    about = "Train and evaluate the V1 CNN of Kindel et al. (2017)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the network on one or more .mat files (same images: neurons are concatenated).
    Train(Box<TrainArgs>),
    /// Write a simulated V1 session (.mat) and its ground truth (…-truth.json).
    Simulate(SimulateArgs),
    /// Look inside a saved network: preferred and most suppressive image of every neuron
    /// (network inversion), receptive-field estimates, spike-triggered averages; writes the
    /// arrays (.npz) and montages (.png).
    Explain(ExplainArgs),
    /// Run a grid (sessions × models × seeds × flag values) and tabulate mean r ± sd;
    /// resumes after an interrupt; `--emit slurm` writes a cluster job array instead;
    /// `--collect DIR` tabulates a finished or partial sweep.
    Sweep(Box<crate::sweep::SweepArgs>),
    /// Print a summary of one or more .mat files, or what is wrong with them.
    Inspect {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// Seeds the stimuli, the neurons and the trial noise.
    #[arg(long, default_value_t = 2017)]
    seed: u64,
    /// Where to write the .mat file; the ground truth goes beside it as …-truth.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 270)]
    images: usize,
    /// Image width and height in pixels.
    #[arg(long, default_value_t = 33)]
    size: usize,
    #[arg(long, default_value_t = 40)]
    neurons: usize,
    /// Poisson trials averaged per image (more trials, less noise).
    #[arg(long, default_value_t = 20)]
    trials: usize,
}

#[derive(Args)]
struct ExplainArgs {
    /// A saved network (`network_T.bpk`, from the page or `v1p train --out`).
    #[arg(long)]
    network: PathBuf,
    /// The .mat file(s) it was trained on.
    #[arg(long = "data", required = true)]
    data: Vec<PathBuf>,
    /// Where to write explain_T.npz, explain_neurons_T.png and conv1_filters_T.png.
    #[arg(long)]
    out: PathBuf,
    /// Ground truth of a simulated session (default: the `…-truth.json` beside the first
    /// data file, if there is one): recovered filters are compared with the true ones.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Random starts per neuron and direction.
    #[arg(long, default_value_t = InversionConfig::new().starts)]
    starts: usize,
    /// Gradient steps of each inversion.
    #[arg(long, default_value_t = InversionConfig::new().steps)]
    steps: usize,
    /// Smoothness prior: σ (pixels) of the Gaussian that blurs every update; 0 for none.
    #[arg(long, default_value_t = InversionConfig::new().smoothness)]
    smoothness: f64,
    /// Distance of the random starts from the mean image, as a fraction of the budget.
    #[arg(long = "start_scale", default_value_t = InversionConfig::new().start_scale)]
    start_scale: f64,
    /// The pixel-norm budget as a multiple of the data's median contrast.
    #[arg(long = "budget_scale", default_value_t = InversionConfig::new().budget_scale)]
    budget_scale: f64,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Print one JSON object (per-neuron figures, per-cell-type recovery, timing) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// A .mat file with `images` [n, h, w] and `activity` [n, neurons]; repeat for more.
    #[arg(long = "data", required = true)]
    data: Vec<PathBuf>,
    /// Start from named settings: `seed` (the published run), `fast` (Adam, 2000 steps),
    /// `best` (the cnnplus recipe measured best here), `ln`, `gabor`.
    #[arg(long, value_parser = PRESETS)]
    preset: Option<String>,
    /// Which model: cnn (the seed's network), cnnplus, ln (linear–nonlinear) or gabor
    /// (Gabor-energy ridge regression). Without --preset, starts from the model's own preset.
    #[arg(long, value_enum)]
    model: Option<ModelFamily>,
    /// Start from the settings of an earlier run: its training record
    /// (`training_manualsave_T.json`, from `--out` or the page's downloads); flags given
    /// here change them. Not with --preset or --model (the record names its model).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["preset", "model"])]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
    /// Print one JSON object with the whole report on stdout.
    #[arg(long)]
    json: bool,
    /// Write the run's files here, as the page's downloads: training record and Pearson data
    /// (.json, .npz), per-neuron .csv, the best network (seed's .npz, Burn's .bpk).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    flags: SeedFlags,
}

/// The seed's flags, made from the one table (`config::flags::FLAGS`): each is
/// `--name <N>` with the table's help, checked by the table's parser as clap reads it, and
/// each one given overrides the preset (or the record of `--config`).
#[derive(Default)]
struct SeedFlags {
    /// (flag, text) of those given, in the table's order.
    given: Vec<(&'static str, String)>,
}

impl SeedFlags {
    fn apply(&self, mut config: TrainingConfig) -> Result<TrainingConfig, ConfigError> {
        flags::apply_flags(
            &mut config,
            self.given.iter().map(|(name, text)| (*name, text.as_str())),
        )?;
        Ok(config)
    }
}

fn flag_arg(flag: &'static Flag) -> Arg {
    let arg = Arg::new(flag.name).long(flag.name).help(flag.help);
    match flag.kind {
        Kind::Choice(choices) => arg.value_name("NAME").value_parser(choices.to_vec()),
        Kind::Bool => arg.value_name("BOOL").value_parser(["true", "false"]),
        Kind::Int { .. } | Kind::Float { .. } => arg
            .value_name(if matches!(flag.kind, Kind::Int { .. }) {
                "N"
            } else {
                "X"
            })
            // clap reports a bad value the table's way: `invalid value '0' for '--conv1
            // <N>': must be between 1 and 512, got 0`.
            .value_parser(move |text: &str| {
                flag.parse(text)
                    .map(|_| text.to_string())
                    .map_err(|e| e.message)
            }),
    }
}

impl clap::FromArgMatches for SeedFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = FLAGS
            .iter()
            .filter_map(|f| {
                matches
                    .get_one::<String>(f.name)
                    .map(|v| (f.name, v.clone()))
            })
            .collect();
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SeedFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        FLAGS.iter().fold(cmd, |cmd, flag| cmd.arg(flag_arg(flag)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { files } => inspect(&files),
        Command::Train(args) => on_thread_pool(|| train(&args)),
        Command::Simulate(args) => simulate(&args),
        Command::Sweep(args) => crate::sweep::sweep(&args),
        Command::Explain(args) => match on_thread_pool(|| explain(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, message)) => {
                eprintln!("error: {message}");
                ExitCode::from(code)
            }
        },
    }
}

/// Runs `work` on one of rayon's threads, where burn-flex runs its kernels. From the main
/// thread, every kernel that burn-flex hands to the pool puts the main thread to sleep until
/// a pool thread has run it: at one thread about 14 thread switches per training step, none
/// on the pool, where a kernel runs where it is called (BENCHMARKS.md).
fn on_thread_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Exit code 2 for bad input (files, flags), 1 when the work itself fails.
type Failure = (u8, String);

fn explain(args: &ExplainArgs) -> Result<(), Failure> {
    use v1_predictor::data::simulate::{GroundTruth, truth_path};
    let bad = |message: String| (2u8, message);
    let dataset = load(&args.data).map_err(bad)?;
    let bytes = std::fs::read(&args.network).map_err(|e| {
        bad(format!(
            "{}: cannot read the file ({e})",
            args.network.display()
        ))
    })?;
    let name = args.network.display().to_string();
    let network = pollster::block_on(SavedNetwork::from_burnpack(&name, &bytes))
        .map_err(|e| bad(e.to_string()))?;
    let config = InversionConfig::new()
        .with_starts(args.starts)
        .with_steps(args.steps)
        .with_smoothness(args.smoothness)
        .with_start_scale(args.start_scale)
        .with_budget_scale(args.budget_scale);
    config.validate().map_err(|e| bad(e.to_string()))?;
    let truth_file = args
        .truth
        .clone()
        .or_else(|| Some(truth_path(&args.data[0])).filter(|p| p.exists()));
    let truth: Option<GroundTruth> = match &truth_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the file ({e})"))
                .and_then(|text| GroundTruth::from_json(&text))
                .map_err(|e| bad(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| bad(format!("cannot create {}: {e}", args.out.display())))?;
    let compute = pollster::block_on(backend::init(args.backend)).map_err(bad)?;
    let mut explainer =
        Explainer::new(&network, &dataset, &compute.device).map_err(|e| bad(e.to_string()))?;
    if let Some(truth) = &truth {
        explainer = explainer
            .with_truth(truth)
            .map_err(|e| bad(e.to_string()))?;
    }

    let failed = |e: v1_predictor::results::ResultsError| (1u8, e.to_string());
    let started = Instant::now();
    let overview = pollster::block_on(explainer.overview()).map_err(failed)?;
    let overview_seconds = started.elapsed().as_secs_f64();
    let targets: Vec<Target> = [Direction::Excite, Direction::Suppress]
        .into_iter()
        .flat_map(|direction| {
            (0..dataset.n_neurons).map(move |neuron| Target { neuron, direction })
        })
        .collect();
    let bar = ProgressBar::new(config.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} inversion steps  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let mut job = explainer.invert(targets, config).map_err(failed)?;
    while !job.is_finished() {
        let objective = pollster::block_on(explainer.advance(&mut job, 5)).map_err(failed)?;
        bar.set_position(job.steps_done() as u64);
        bar.set_message(format!("mean drive {objective:.3}"));
    }
    let inverted = pollster::block_on(explainer.finish(job)).map_err(failed)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let files =
        explain::explain_files(&overview, &inverted, network.info.started_unix).map_err(failed)?;
    for file in &files {
        let path = args.out.join(&file.name);
        std::fs::write(&path, &file.bytes)
            .map_err(|e| (1, format!("cannot write {}: {e}", path.display())))?;
    }
    let summary = explain::summarise(&overview, &inverted);
    if args.json {
        let out = json!({
            "backend": compute.description,
            "network": name,
            "budget": overview.budget,
            "summary": summary,
            "timing": { "overview_seconds": overview_seconds, "total_seconds": seconds },
            "files": files.iter().map(|f| &f.name).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "{} neurons inverted in {seconds:.1} s on {}; wrote {} to {}",
            dataset.n_neurons,
            compute.description,
            files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            args.out.display()
        );
        println!(
            "preferred images beat every data image's predicted rate for {} of {} neurons; \
             median consistency of starts {:.2}",
            summary.preferred_beats_data, dataset.n_neurons, summary.median_consistency
        );
        for t in &summary.truth_by_type {
            println!(
                "{:<20} n={:<3} median similarity to the true filter: preferred {:.2}, RF {:.2}, STA {:.2}",
                t.cell_type, t.neurons, t.preferred, t.rf, t.sta
            );
        }
    }
    Ok(())
}

fn simulate(args: &SimulateArgs) -> ExitCode {
    use v1_predictor::data::simulate::{SimulationConfig, simulate, truth_path, write_session};
    if args.images < 10 || args.size < 8 || args.neurons == 0 || args.trials == 0 {
        eprintln!("error: need at least 10 images of 8×8 pixels, 1 neuron and 1 trial");
        return ExitCode::from(2);
    }
    let config = SimulationConfig {
        seed: args.seed,
        n_images: args.images,
        size: args.size,
        n_neurons: args.neurons,
        trials: args.trials,
    };
    let (mat, truth) = write_session(&simulate(&config));
    let truth_file = truth_path(&args.out);
    if let Err(e) = std::fs::write(&args.out, mat).and_then(|_| std::fs::write(&truth_file, truth))
    {
        eprintln!("error: cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {} and {}", args.out.display(), truth_file.display());
    ExitCode::SUCCESS
}

fn load(files: &[PathBuf]) -> Result<Dataset, String> {
    let contents = files
        .iter()
        .map(|path| {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            std::fs::read(path)
                .map(|bytes| (name, bytes))
                .map_err(|e| format!("{}: cannot read the file ({e})", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    data::load_files(contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        .map_err(|e| e.to_string())
}

fn inspect(files: &[PathBuf]) -> ExitCode {
    match load(files) {
        Ok(dataset) => {
            let s = dataset.summary();
            println!("files:   {}", s.sources.join(", "));
            println!(
                "images:  {} × {}×{} pixels (values {} to {}, mean {:.1}, sd {:.1})",
                s.n_images, s.height, s.width, s.pixel_min, s.pixel_max, s.pixel_mean, s.pixel_sd
            );
            println!(
                "neurons: {} (mean rate {:.3}, max {:.3} spikes per bin)",
                s.n_neurons, s.mean_rate, s.max_rate
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The settings a run starts from: a run's record (`--config`), a preset, a model's preset
/// or the seed's; then the flags given on the command line.
fn train_config(args: &TrainArgs) -> Result<TrainingConfig, String> {
    let base = match (&args.config, &args.preset, args.model) {
        (Some(path), _, _) => read_record(path)?,
        (None, Some(name), model) => {
            let preset = TrainingConfig::preset(name).expect("clap checked the preset");
            if let Some(model) = model.filter(|&m| m != preset.model.family) {
                return Err(format!(
                    "--preset {name} is a {} preset; --model {} starts from its own \
                     (drop --preset, or pick one of that model's)",
                    preset.model.family.name(),
                    model.name()
                ));
            }
            preset
        }
        (None, None, Some(family)) => TrainingConfig::for_family(family),
        (None, None, None) => TrainingConfig::new(),
    };
    args.flags.apply(base).map_err(|e| e.to_string())
}

/// The flags of a run's exported record: its `FLAGS` object (the `TrainingConfig`).
fn read_record(path: &Path) -> Result<TrainingConfig, String> {
    let refuse = |why: String| format!("--config {}: {why}", path.display());
    let text =
        std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read the file ({e})")))?;
    let record: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| refuse(format!("not JSON ({e})")))?;
    let flags = record
        .get("FLAGS")
        .ok_or_else(|| refuse("no FLAGS in it: give a run's training_manualsave_T.json".into()))?;
    serde_json::from_value(flags.clone()).map_err(|e| refuse(format!("its FLAGS: {e}")))
}

fn train(args: &TrainArgs) -> ExitCode {
    let config = match train_config(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let dataset = match load(&args.data) {
        Ok(d) => d,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if !config.model.family.is_trained() {
        return fit_ridge(args, config, dataset);
    }
    let summary = dataset.summary();
    let compute = match pollster::block_on(backend::init(args.backend)) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mut trainer = match Trainer::new(config, dataset, &compute.device) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A bad --out fails now, not after the run.
    if let Some(dir) = &args.out
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let bar = ProgressBar::new(trainer.config().max_steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let result = pollster::block_on(trainer.run(|progress| {
        bar.set_position(progress.steps_done as u64);
        if let Some(best) = &progress.best {
            bar.set_message(format!("best r {:.3} @ {}", best.mean_r, best.step));
        }
        true
    }));
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = result {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let report = trainer.report();
    if let Some(dir) = &args.out {
        match pollster::block_on(write_results(&trainer, started_unix, dir)) {
            Ok(names) => eprintln!(
                "wrote {} files to {}: {}",
                names.len(),
                dir.display(),
                names.join(", ")
            ),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ms_per_step = seconds * 1e3 / report.steps_done.max(1) as f64;
    if args.json {
        let out = json!({
            "dataset": summary,
            "backend": compute.description,
            "report": report,
            "timing": { "total_seconds": seconds, "ms_per_step": ms_per_step },
        });
        println!("{out}");
    } else if let Some(best) = &report.best {
        println!(
            "{} neurons, {} images ({} train / {} early stop / {} eval), {}",
            summary.n_neurons,
            summary.n_images,
            report.split.train.len(),
            report.split.early_stop.len(),
            report.split.eval.len(),
            compute.description
        );
        println!(
            "best network at step {}: mean r = {:.3}, eval loss = {:.4} (baseline {:.4}), FVE = {:.3}",
            best.step, best.mean_r, best.eval_loss, report.baseline_loss, best.fve
        );
        println!(
            "{} steps in {:.1} s ({:.1} ms per step)",
            report.steps_done, seconds, ms_per_step
        );
    }
    ExitCode::SUCCESS
}

/// The Gabor ridge model: fitted in closed form on the host; no network file (its bank is
/// fixed by the flags, and refitting takes seconds).
fn fit_ridge(args: &TrainArgs, config: TrainingConfig, dataset: Dataset) -> ExitCode {
    let summary = dataset.summary();
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = match fit_gabor_ridge(config, &dataset) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(dir) = &args.out {
        let files = results::report_files(&report, started_unix, &dataset.sources, &[])
            .map_err(|e| e.to_string())
            .and_then(|files| write_files(dir, files));
        match files {
            Ok(names) => eprintln!("wrote {} to {}", names.join(", "), dir.display()),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        let out = json!({
            "dataset": summary,
            "backend": "CPU (host, closed-form ridge)",
            "report": report,
            "timing": { "total_seconds": seconds, "ms_per_step": serde_json::Value::Null },
        });
        println!("{out}");
    } else if let Some(best) = &report.best {
        println!(
            "Gabor-energy ridge, {} features: mean r = {:.3}, eval loss = {:.4} (baseline {:.4}), \
             FVE = {:.3}, fitted in {seconds:.1} s",
            report.flags.model.gabor.n_features(),
            best.mean_r,
            best.eval_loss,
            report.baseline_loss,
            best.fve
        );
    }
    ExitCode::SUCCESS
}

fn write_files(dir: &Path, files: Vec<results::ExportFile>) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for file in &files {
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|f| f.name).collect())
}

/// The same files the page offers for download, into `dir`.
async fn write_results(
    trainer: &Trainer,
    started_unix: u64,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let report = trainer.report();
    let mut files = results::report_files(&report, started_unix, &trainer.dataset().sources, &[])
        .map_err(|e| e.to_string())?;
    files.extend(
        v1_predictor::plots::training_pngs(&report, started_unix).map_err(|e| e.to_string())?,
    );
    if let Some(network) = SavedNetwork::best_of(trainer, started_unix)
        .await
        .map_err(|e| e.to_string())?
    {
        files.extend(results::network_files(&network).map_err(|e| e.to_string())?);
    }
    write_files(dir, files)
}

#[cfg(test)]
mod tests {
    use super::on_thread_pool;

    #[test]
    fn work_handed_to_the_thread_pool_runs_on_a_pool_thread() {
        assert_eq!(rayon::current_thread_index(), None, "the test's own thread");
        assert!(on_thread_pool(rayon::current_thread_index).is_some());
    }
}
