//! The `icm` command line: argument parsing and one short function per subcommand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use icm::grid::runner::{default_threads, ensure_no_failures, parse_shard, run_grid, RunOptions};
use icm::nn::products;
use icm::nn::{Arch, DeviceKind, ModelSpec};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::{load_experiment_with, Override};
use icm::train::bench;
use icm::util::simd::{self, Simd};

#[derive(Parser)]
#[command(
    name = "icm",
    version,
    about = "Benchmark Infinite Class Mixup against the Mixup family"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train every run of an experiment grid that is not done yet, then write its report.
    Run(RunArgs),
    /// Done / running / failed / pending runs per method, with an ETA.
    Status(GridArgs),
    /// Every run folder of the experiment's results folder: state, whether it belongs to the
    /// current grid, and how the others differ from it.
    Runs(GridArgs),
    /// Move aside (or delete) the run folders outside the current grid; a dry run unless
    /// --move, --move-to or --delete is given. Never touches runs of the grid or running ones.
    Clean(CleanArgs),
    /// Write (and with --submit, submit) a Slurm job array that runs the grid in shards.
    Slurm(SlurmArgs),
    /// Print each split's per-class training counts and the test-set size, without training.
    Data {
        /// Experiment file.
        experiment: PathBuf,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Time full training steps on synthetic input, and the share of mixing + loss.
    Bench(BenchArgs),
    /// Compare one training step (loss and gradient) of every network family on the CPU and on
    /// `--device`, from the same parameters, batch and mixing; PASS/FAIL per family.
    DeviceCheck(DeviceCheckArgs),
    /// Write the tables and reliability diagrams of an experiment (file or results folder).
    Report(ReportArgs),
    /// Test the claim "method A beats method B" on every split, with paired statistics over seeds.
    Compare(CompareArgs),
    /// The method presets with every setting (or an experiment's methods as it resolves them).
    Methods {
        /// Experiment file (default: list the presets).
        experiment: Option<PathBuf>,
        #[command(flatten)]
        sets: SetArgs,
    },
}

/// `--set key=value` overrides of the experiment file, repeatable.
#[derive(Args)]
struct SetArgs {
    /// Override a value of the experiment file by key path, e.g. `--set train.lr=0.1` (the
    /// value is YAML; repeatable; `--set sweep.train.lr=[0.05,0.1]` adds a sweep).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl SetArgs {
    /// Reads the experiment file with the overrides applied.
    fn load(&self, path: &std::path::Path) -> Result<icm::spec::LoadedExperiment> {
        let overrides = self
            .set
            .iter()
            .map(|t| Override::parse(t).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        load_experiment_with(path, &overrides)
    }
}

#[derive(Args)]
struct CompareArgs {
    /// Experiment file.
    experiment: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    /// The method claimed better (its name in the report's tables).
    a: String,
    /// The method it is compared with.
    b: String,
    /// A metric of the report (accuracy, ece, adaptive_ece, mce, nll, brier, many_shot, ...).
    #[arg(long)]
    metric: Option<String>,
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Experiment file, e.g. experiments/quickstart.yaml.
    experiment: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    /// Where run folders go.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Where reports go.
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Only train; skip the report.
    #[arg(long)]
    no_report: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Runs trained at the same time (at most the number of pending runs are started).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    jobs: usize,
    /// Threads per run (default: cores / jobs).
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
    /// Only this shard of the grid, k/n (0 ≤ k < n).
    #[arg(long)]
    shard: Option<String>,
    /// Run failed runs again.
    #[arg(long)]
    retry_failed: bool,
    /// Seconds without a heartbeat after which another process's claim is stale (at least 60).
    #[arg(long, default_value_t = 3600)]
    lock_timeout: u64,
    /// Save a checkpoint every this many epochs (default: once a minute, and at the end).
    #[arg(long, value_parser = at_least_one)]
    checkpoint_every: Option<usize>,
    /// Train on `cpu` or `cuda` (default: the experiment's `device`, else cpu).
    #[arg(long)]
    device: Option<DeviceKind>,
    /// Keep each run's checkpoint after it finishes (by default it is removed).
    #[arg(long)]
    keep_checkpoints: bool,
}

/// An experiment's grid and where its runs are (`status`, `runs`, `clean`).
#[derive(Args)]
struct GridArgs {
    /// Experiment file.
    experiment: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    #[arg(long, default_value_t = 3600)]
    lock_timeout: u64,
}

#[derive(Args)]
struct CleanArgs {
    #[command(flatten)]
    runs: GridArgs,
    /// Move the runs outside the grid into <results>/<experiment>/.stale/.
    #[arg(long = "move", conflicts_with_all = ["move_to", "delete"])]
    move_default: bool,
    /// Move the runs outside the grid into this folder.
    #[arg(long, conflicts_with = "delete")]
    move_to: Option<PathBuf>,
    /// Delete the runs outside the grid.
    #[arg(long)]
    delete: bool,
}

#[derive(Args)]
struct SlurmArgs {
    /// Experiment file.
    experiment: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    #[arg(long)]
    partition: Option<String>,
    /// Wall-time limit per array task.
    #[arg(long, default_value = "04:00:00")]
    time: String,
    /// GPUs per array task (default: 1 for a `device: cuda` experiment, else 0).
    #[arg(long)]
    gpus: Option<u32>,
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// At most this many array tasks at once.
    #[arg(long)]
    array_parallelism: Option<u32>,
    /// Number of array tasks (shards); default one per run.
    #[arg(long)]
    tasks: Option<usize>,
    /// Submit with sbatch.
    #[arg(long)]
    submit: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Method preset (as in experiment files).
    #[arg(long, default_value = "icm-mixup")]
    method: String,
    /// Network: mlp, small_cnn, resnet8/20/32/44/56/110, resnet18/34.
    #[arg(long, default_value = "mlp")]
    model: String,
    /// MLP hidden widths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "512,512")]
    hidden: Vec<usize>,
    /// Input shape CxHxW.
    #[arg(long, default_value = "3x32x32")]
    input: String,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    classes: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Also time the data pipeline (gather + crop/flip) and print its ratio to the trainer.
    #[arg(long)]
    loader: bool,
    /// Threads for the matrix products (default: all cores).
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// SIMD level of the CPU products: auto (the best the CPU has), avx512 or avx2 (also
    /// `ICM_SIMD`), so one AVX-512 host measures both paths.
    #[arg(long)]
    simd: Option<String>,
    /// Also time one 2048³ product on the same threads (the sgemm peak a step is compared with).
    #[arg(long)]
    sgemm: bool,
    /// Also compare the step with one of this method (e.g. `mixup`), the two timed in
    /// alternating rounds in one process; prints the median ratio of their step times.
    #[arg(long)]
    against: Option<String>,
    /// Rounds of the `--against` comparison (each times steps / rounds steps of each method).
    /// Default: as many as steps, one step of each method per round, so that both meet the same
    /// state of a shared machine (medians over 20-step rounds moved by ±1 %, over single steps
    /// by ±0.5 %).
    #[arg(long, value_parser = at_least_one)]
    rounds: Option<usize>,
}

#[derive(Args)]
struct DeviceCheckArgs {
    /// The device compared with the CPU (`cpu` compares two CPU devices: exact agreement).
    #[arg(long, default_value = "cuda")]
    device: DeviceKind,
    /// Input shape CxHxW.
    #[arg(long, default_value = "3x32x32")]
    input: String,
    /// Images in the batch (at least 2: batch normalisation and ICM need pairs).
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(Args)]
struct ReportArgs {
    /// An experiment file (its grid, in its order) or a folder of runs.
    source: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
    /// Where run folders are (used with an experiment file).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Where reports go.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Table file formats, any of md,tex,csv.
    #[arg(long, default_value = "md,tex,csv")]
    format: String,
    /// Compute every run's test metrics again from its stored logits (logits.npy) instead of
    /// reading them from metrics.json.
    #[arg(long)]
    recompute: bool,
}

/// A count that must be at least 1 (`--jobs`, `--threads`, `--checkpoint-every`).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (0 would do nothing)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number ≥ 1")),
    }
}

/// glibc's malloc hands freed memory back to the kernel eagerly, so each training step
/// page-faults its activations in again (a ResNet-20 step: 157k page faults in 15 steps, 6 %
/// of its time in the kernel). Kept for reuse instead: buffers up to 32 MB come from the heaps
/// rather than their own mappings (the most `M_MMAP_THRESHOLD` accepts on 64-bit hosts; the
/// 128 MB set here before was refused and changed nothing), the main heap keeps up to 128 MB
/// free at its top, and every heap (the worker threads' too) keeps a 64 MB pad when it
/// shrinks (56k page faults). Larger buffers (whole datasets) still go back, so the peak
/// memory does not grow.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    if let Err(e) = icm::util::simd::set_simd_from_env() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Status(args) => status(args),
        Command::Runs(args) => runs(args),
        Command::Clean(args) => clean(args),
        Command::Slurm(args) => slurm(args),
        Command::Data { experiment, sets } => data(experiment, sets),
        Command::Bench(args) => bench(args),
        Command::DeviceCheck(args) => device_check(args),
        Command::Report(args) => report(args),
        Command::Compare(args) => compare(args),
        Command::Methods { experiment, sets } => methods(experiment, sets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `icm run`: train what is left of the grid, write the report, fail if any run failed.
fn run(args: RunArgs) -> Result<()> {
    let exp = args.sets.load(&args.experiment)?;
    let opts = RunOptions {
        quiet: args.quiet,
        jobs: args.jobs,
        threads: args.threads.unwrap_or_else(|| default_threads(args.jobs)),
        shard: args.shard.as_deref().map(parse_shard).transpose()?,
        retry_failed: args.retry_failed,
        lock_timeout: Duration::from_secs(args.lock_timeout),
        checkpoint_every: args.checkpoint_every,
        device: args.device,
        keep_checkpoints: args.keep_checkpoints,
    };
    let summary = run_grid(&exp, &args.results, &opts)?;
    for (id, what) in &summary.diverged {
        eprintln!("warning: run {id} diverged at {what}; reports leave it out of means and claims");
    }
    println!(
        "{}: {} runs{}, {} trained ({} resumed), {} skipped (already done), {} waited for (held by another worker), \
         {} failed earlier (not retried), {} failed, {:.1} s",
        exp.name,
        summary.total,
        if opts.shard.is_some() {
            " in this shard"
        } else {
            ""
        },
        summary.trained,
        summary.resumed,
        summary.skipped,
        summary.running_elsewhere,
        summary.previously_failed.len(),
        summary.failed.len(),
        summary.seconds
    );
    if !args.no_report && summary.skipped + summary.trained > 0 {
        let out = write_report(
            &ReportSource::Experiment(Box::new(exp.clone())),
            &args.results,
            &args.reports,
            Formats::default(),
        )?;
        println!("report: {}", out.dir.join("index.html").display());
    }
    ensure_no_failures(&summary, &args.results, &exp.name)
}

/// `icm status`.
fn status(args: GridArgs) -> Result<()> {
    let exp = args.sets.load(&args.experiment)?;
    let timeout = Duration::from_secs(args.lock_timeout);
    icm::grid::locks::check_lock_timeout(timeout)?;
    print!(
        "{}",
        icm::grid::status::grid_status(&exp, &args.results, timeout)?
    );
    Ok(())
}

/// `icm runs`.
fn runs(args: GridArgs) -> Result<()> {
    use icm::grid::inventory;
    let exp = args.sets.load(&args.experiment)?;
    let timeout = Duration::from_secs(args.lock_timeout);
    icm::grid::locks::check_lock_timeout(timeout)?;
    let folders = inventory::run_folders(&exp, &args.results, timeout)?;
    print!(
        "{}",
        inventory::render_run_folders(&exp, &args.results, &folders)
    );
    Ok(())
}

/// `icm clean`.
fn clean(args: CleanArgs) -> Result<()> {
    use icm::grid::inventory::{self, CleanAction};
    let exp = args.runs.sets.load(&args.runs.experiment)?;
    let timeout = Duration::from_secs(args.runs.lock_timeout);
    icm::grid::locks::check_lock_timeout(timeout)?;
    let action = if args.delete {
        CleanAction::Delete
    } else if let Some(dir) = args.move_to {
        CleanAction::MoveTo(dir)
    } else if args.move_default {
        CleanAction::MoveTo(args.runs.results.join(&exp.name).join(inventory::STALE_DIR))
    } else {
        CleanAction::DryRun
    };
    print!(
        "{}",
        inventory::clean(&exp, &args.runs.results, timeout, &action)?
    );
    Ok(())
}

/// `icm slurm`: write the job-array script, and submit it with `--submit`.
fn slurm(args: SlurmArgs) -> Result<()> {
    let exp = args.sets.load(&args.experiment)?;
    let opts = icm::grid::slurm::SlurmOptions {
        partition: args.partition,
        time: args.time,
        gpus: args.gpus,
        cpus: args.cpus,
        array_parallelism: args.array_parallelism,
        tasks: args.tasks,
    };
    let (script, tasks) = icm::grid::slurm::write_script(&exp, &args.results, &opts)?;
    println!("wrote {} ({tasks} array tasks)", script.display());
    if args.submit {
        let id = icm::grid::slurm::submit(&script)?;
        println!(
            "submitted job {id}; follow with `icm status {}`",
            args.experiment.display()
        );
    }
    Ok(())
}

/// `icm data`.
fn data(experiment: PathBuf, sets: SetArgs) -> Result<()> {
    let exp = sets.load(&experiment)?;
    print!("{}", icm::grid::runner::describe_data(&exp)?);
    Ok(())
}

/// `icm methods`: the methods legend of the report, for the presets or an experiment's methods.
/// A preset that needs settings (`custom`) is listed below the table with what it needs.
fn methods(experiment: Option<PathBuf>, sets: SetArgs) -> Result<()> {
    if let Some(path) = experiment {
        let exp = sets.load(&path)?;
        print!("{}", icm::report::legend::methods_legend(&exp.methods));
        return Ok(());
    }
    if let Some(first) = sets.set.first() {
        anyhow::bail!("--set {first}: overrides change an experiment file; give one");
    }
    let (mut methods, mut needs) = (Vec::new(), Vec::new());
    for preset in icm::mix::method::preset_names() {
        let entry = icm::mix::MethodEntry {
            preset: preset.clone(),
            params: Default::default(),
        };
        match entry.resolve() {
            Ok(method) => methods.push(method),
            Err(why) => needs.push(format!("- {why}\n")),
        }
    }
    print!("{}", icm::report::legend::methods_legend(&methods));
    print!("{}", needs.concat());
    Ok(())
}

/// `icm bench`: time training steps, evaluation and (with `--loader`) the data pipeline.
fn bench(args: BenchArgs) -> Result<()> {
    let arch: Arch = serde_yaml::from_str(&args.model)
        .map_err(|e| anyhow::anyhow!("--model `{}`: {e}", args.model))?;
    let spec = bench::BenchSpec {
        model: ModelSpec {
            arch,
            hidden: (arch == Arch::Mlp).then_some(args.hidden),
        },
        shape: bench::parse_shape(&args.input)?,
        batch: args.batch,
        classes: args.classes,
        warmup: args.warmup,
        steps: args.steps,
        method: bench::parse_method("--method", &args.method)?,
        device: args.device,
    };
    if let Some(level) = &args.simd {
        let level = Simd::parse(level).map_err(|e| anyhow::anyhow!("--simd: {e}"))?;
        simd::set_simd(level).map_err(|e| anyhow::anyhow!("--simd: {e}"))?;
    }
    if spec.steps == 0 {
        anyhow::bail!("--steps must be ≥ 1");
    }
    // Parsed before the main benchmark runs, so that a misspelt method fails at once.
    let against = match &args.against {
        Some(other) => Some(bench::parse_method("--against", other)?),
        None => None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or_else(|| default_threads(1)))
        .build()?;
    let r = pool.install(|| bench::run(&spec))?;
    println!(
        "{}{} on {}, B={}, {}: step {:.3} ms; mixing {:.3} ms + loss fwd/bwd {:.3} ms = {:.2}% of a step",
        args.model,
        spec.model
            .hidden
            .as_ref()
            .map_or(String::new(), |h| format!(" {h:?}")),
        args.input,
        args.batch,
        spec.method.display_name(),
        r.step_ms,
        r.mix_ms,
        r.loss_ms,
        r.method_share * 100.0
    );
    let step_gflops = r.product_flops_per_step / r.step_ms / 1e6;
    println!(
        "products: {} on {} thread(s); {:.3} GFLOP per step ({:.1} GFLOP/s)",
        simd::simd_in_use(),
        pool.current_num_threads(),
        r.product_flops_per_step / 1e9,
        step_gflops
    );
    if args.sgemm {
        let peak = pool.install(|| products::sgemm_gflops(2048, 3));
        println!(
            "sgemm 2048³: {peak:.1} GFLOP/s; the step's products reach {:.1}% of it",
            100.0 * step_gflops / peak
        );
    }
    if let Some(against) = against {
        let rounds = args.rounds.unwrap_or(spec.steps);
        let c = pool.install(|| bench::compare_steps(&spec, &against, rounds))?;
        println!(
            "{} vs {}: step time ratio {:.3} (median of {} alternating rounds; {:.3}–{:.3}), {:.3} vs {:.3} ms",
            spec.method.display_name(),
            against.display_name(),
            c.median_ratio,
            c.rounds,
            c.min_ratio,
            c.max_ratio,
            c.median_ms.0,
            c.median_ms.1
        );
    }
    if args.loader {
        let fed = bench::loader_images_per_second(spec.shape, 10_000, args.batch, 200);
        println!(
            "data pipeline: {fed:.0} img/s = {:.1}x what the trainer consumes",
            fed / r.images_per_second
        );
    }
    println!(
        "evaluation: {:.1} img/s in batches of {} ({:.1}x training)",
        r.eval_images_per_second,
        r.eval_batch,
        r.eval_images_per_second / r.images_per_second
    );
    let host = if args.device == DeviceKind::Cuda {
        "host "
    } else {
        ""
    };
    println!(
        "{:.1} img/s, peak {host}memory {:.1} MiB",
        r.images_per_second, r.peak_rss_mib
    );
    Ok(())
}

/// `icm device-check`: the table of [`icm::train::device_check`]; fails when a family differs.
fn device_check(args: DeviceCheckArgs) -> Result<()> {
    use icm::train::device_check as check;
    if args.batch < 2 {
        anyhow::bail!("--batch must be ≥ 2: batch normalisation and ICM need at least 2 images");
    }
    let setup = check::CheckSetup {
        shape: bench::parse_shape(&args.input)?,
        batch: args.batch,
        ..check::CheckSetup::cifar()
    };
    let checks = check::run(args.device, &setup, &check::FAMILIES)?;
    print!("{}", check::render(args.device, &setup, &checks));
    let failed = checks.iter().filter(|c| !c.passed()).count();
    if failed > 0 {
        anyhow::bail!(
            "device-check: {failed} of {} network families differ between cpu and {} beyond the tolerances",
            checks.len(),
            args.device
        );
    }
    Ok(())
}

/// `icm report`: rebuild the report of an experiment file or a folder of runs.
fn report(args: ReportArgs) -> Result<()> {
    let formats = Formats::parse(&args.format)?;
    if !args.source.exists() {
        anyhow::bail!(
            "icm report {}: no such file or folder; give an experiment file (e.g. \
             experiments/quickstart.yaml) or a folder of runs (e.g. results/quickstart)",
            args.source.display()
        );
    }
    let source = if args.source.is_dir() {
        if let Some(first) = args.sets.set.first() {
            anyhow::bail!(
                "--set {first}: overrides change an experiment file, and {} is a folder of runs; \
                 give the experiment file",
                args.source.display()
            );
        }
        ReportSource::Folder(args.source)
    } else if args.source.file_name().is_some_and(|n| n == "metrics.json") {
        anyhow::bail!(
            "icm report {}: this is one run's record; give the experiment file or the folder of \
             runs it lies in (e.g. {})",
            args.source.display(),
            args.source
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("results"))
                .display()
        );
    } else {
        ReportSource::Experiment(Box::new(args.sets.load(&args.source)?))
    };
    let report = icm::report::write_report_recomputing(
        &source,
        &args.results,
        &args.out,
        formats,
        args.recompute,
    )?;
    println!(
        "report: {} ({} tables, {} figures)",
        report.dir.join("index.html").display(),
        report.tables.len(),
        report.figures.len()
    );
    Ok(())
}

/// `icm compare`: one claim on every split, on the terminal.
fn compare(args: CompareArgs) -> Result<()> {
    let exp = args.sets.load(&args.experiment)?;
    print!(
        "{}",
        icm::report::compare(
            &exp,
            &args.results,
            &args.a,
            &args.b,
            args.metric.as_deref()
        )?
    );
    Ok(())
}
