//! The `icm` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use icm::config::load_experiment;
use icm::report::{write_report, ReportSource};
use icm::runner::{ensure_no_failures, run_grid};

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
        } => {
            let exp = load_experiment(&experiment)?;
            let summary = run_grid(&exp, &results, quiet)?;
            println!(
                "{}: {} runs, {} trained, {} skipped (already done), {} failed, {:.1} s",
                exp.name,
                summary.total,
                summary.trained,
                summary.skipped,
                summary.failed.len(),
                summary.seconds
            );
            if !no_report && summary.failed.len() < summary.total {
                let out = write_report(
                    &ReportSource::Experiment(Box::new(exp.clone())),
                    &results,
                    &reports,
                )?;
                println!("report: {}", out.join("table.md").display());
            }
            ensure_no_failures(&summary, &results, &exp.name)
        }
        Command::Report {
            source,
            results,
            out,
        } => {
            let source = if source.is_dir() {
                ReportSource::Folder(source)
            } else {
                ReportSource::Experiment(Box::new(load_experiment(&source)?))
            };
            let dir = write_report(&source, &results, &out)?;
            println!("report: {}", dir.join("table.md").display());
            Ok(())
        }
    }
}
