//! The `icm` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use icm::grid::runner::{default_threads, ensure_no_failures, parse_shard, run_grid, RunOptions};
use icm::nn::{Arch, DeviceKind, ModelSpec};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::load_experiment;
use icm::train::bench;

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
    Run {
        /// Experiment file, e.g. experiments/quickstart.yaml.
        experiment: PathBuf,
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
        /// Runs trained at the same time.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Threads per run (default: cores / jobs).
        #[arg(long)]
        threads: Option<usize>,
        /// Only this shard of the grid, k/n (0 ≤ k < n).
        #[arg(long)]
        shard: Option<String>,
        /// Run failed runs again.
        #[arg(long)]
        retry_failed: bool,
        /// Seconds without a heartbeat after which another process's claim is stale.
        #[arg(long, default_value_t = 3600)]
        lock_timeout: u64,
        /// Save a checkpoint every this many epochs (default: once a minute, and at the end).
        #[arg(long)]
        checkpoint_every: Option<usize>,
        /// Train on `cpu` or `cuda` (default: the experiment's `device`, else cpu).
        #[arg(long)]
        device: Option<DeviceKind>,
    },
    /// Done / running / failed / pending runs per method, with an ETA.
    Status {
        /// Experiment file.
        experiment: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        #[arg(long, default_value_t = 3600)]
        lock_timeout: u64,
    },
    /// Write (and with --submit, submit) a Slurm job array that runs the grid in shards.
    Slurm {
        /// Experiment file.
        experiment: PathBuf,
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
    },
    /// Print each split's per-class training counts and the test-set size, without training.
    Data {
        /// Experiment file.
        experiment: PathBuf,
    },
    /// Time full training steps on synthetic input, and the share of mixing + loss.
    Bench {
        /// Method preset (as in experiment files).
        #[arg(long, default_value = "icm-mixup")]
        method: String,
        /// Network: mlp, small_cnn, resnet20/32/44/56/110, resnet18/34.
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
        #[arg(long)]
        threads: Option<usize>,
        /// `cpu` or `cuda`.
        #[arg(long, default_value = "cpu")]
        device: DeviceKind,
    },
    /// Write the tables and reliability diagrams of an experiment (file or results folder).
    Report {
        /// An experiment file (its grid, in its order) or a folder of runs.
        source: PathBuf,
        /// Where run folders are (used with an experiment file).
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Where reports go.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Table file formats, any of md,tex,csv.
        #[arg(long, default_value = "md,tex,csv")]
        format: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            experiment,
            results,
            reports,
            no_report,
            quiet,
            jobs,
            threads,
            shard,
            retry_failed,
            lock_timeout,
            checkpoint_every,
            device,
        } => {
            let exp = load_experiment(&experiment)?;
            let opts = RunOptions {
                quiet,
                jobs: jobs.max(1),
                threads: threads.unwrap_or_else(|| default_threads(jobs)),
                shard: shard.as_deref().map(parse_shard).transpose()?,
                retry_failed,
                lock_timeout: Duration::from_secs(lock_timeout),
                checkpoint_every,
                device,
            };
            let summary = run_grid(&exp, &results, &opts)?;
            println!(
                "{}: {} runs{}, {} trained ({} resumed), {} skipped (already done), {} running elsewhere, \
                 {} failed earlier (not retried), {} failed, {:.1} s",
                exp.name,
                summary.total,
                if opts.shard.is_some() { " in this shard" } else { "" },
                summary.trained,
                summary.resumed,
                summary.skipped,
                summary.running_elsewhere,
                summary.previously_failed,
                summary.failed.len(),
                summary.seconds
            );
            if !no_report && summary.skipped + summary.trained > 0 {
                let out = write_report(
                    &ReportSource::Experiment(Box::new(exp.clone())),
                    &results,
                    &reports,
                    Formats::default(),
                )?;
                println!("report: {}", out.dir.join("index.html").display());
            }
            ensure_no_failures(&summary, &results, &exp.name)
        }
        Command::Status {
            experiment,
            results,
            lock_timeout,
        } => {
            let exp = load_experiment(&experiment)?;
            print!(
                "{}",
                icm::grid::status::grid_status(&exp, &results, Duration::from_secs(lock_timeout))?
            );
            Ok(())
        }
        Command::Slurm {
            experiment,
            results,
            partition,
            time,
            gpus,
            cpus,
            array_parallelism,
            tasks,
            submit,
        } => {
            let exp = load_experiment(&experiment)?;
            let opts = icm::grid::slurm::SlurmOptions {
                partition,
                time,
                gpus,
                cpus,
                array_parallelism,
                tasks,
            };
            let (script, tasks) = icm::grid::slurm::write_script(&exp, &results, &opts)?;
            println!("wrote {} ({tasks} array tasks)", script.display());
            if submit {
                let id = icm::grid::slurm::submit(&script)?;
                println!(
                    "submitted job {id}; follow with `icm status {}`",
                    experiment.display()
                );
            }
            Ok(())
        }
        Command::Data { experiment } => {
            let exp = load_experiment(&experiment)?;
            print!("{}", icm::grid::runner::describe_data(&exp)?);
            Ok(())
        }
        Command::Bench {
            method,
            model,
            hidden,
            input,
            batch,
            classes,
            warmup,
            steps,
            loader,
            threads,
            device,
        } => {
            let arch: Arch = serde_yaml::from_str(&model)
                .map_err(|e| anyhow::anyhow!("--model `{model}`: {e}"))?;
            let spec = bench::BenchSpec {
                model: ModelSpec {
                    arch,
                    hidden: (arch == Arch::Mlp).then_some(hidden),
                },
                shape: bench::parse_shape(&input)?,
                batch,
                classes,
                warmup,
                steps: steps.max(1),
                method: bench::parse_method(&method)?,
                device,
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads.unwrap_or_else(|| default_threads(1)))
                .build()?;
            let r = pool.install(|| bench::run(&spec))?;
            println!(
                "{model}{} on {input}, B={batch}, {}: step {:.3} ms; mixing {:.3} ms + loss fwd/bwd {:.3} ms = {:.2}% of a step",
                spec.model.hidden.as_ref().map_or(String::new(), |h| format!(" {h:?}")),
                spec.method.display_name(),
                r.step_ms,
                r.mix_ms,
                r.loss_ms,
                r.method_share * 100.0
            );
            if loader {
                let fed = bench::loader_images_per_second(spec.shape, 10_000, batch, 200);
                println!(
                    "data pipeline: {fed:.0} img/s = {:.1}x what the trainer consumes",
                    fed / r.images_per_second
                );
            }
            println!(
                "evaluation: {:.1} img/s ({:.1}x training)",
                r.eval_images_per_second,
                r.eval_images_per_second / r.images_per_second
            );
            println!(
                "{:.1} img/s, peak {}memory {:.1} MiB",
                r.images_per_second,
                if device == DeviceKind::Cuda {
                    "host "
                } else {
                    ""
                },
                r.peak_rss_mib
            );
            Ok(())
        }
        Command::Report {
            source,
            results,
            out,
            format,
        } => {
            let formats = Formats::parse(&format)?;
            let source = if source.is_dir() {
                ReportSource::Folder(source)
            } else {
                ReportSource::Experiment(Box::new(load_experiment(&source)?))
            };
            let report = write_report(&source, &results, &out, formats)?;
            println!(
                "report: {} ({} tables, {} figures)",
                report.dir.join("index.html").display(),
                report.tables.len(),
                report.figures.len()
            );
            Ok(())
        }
    }
}
