//! Progress of a grid as it trains: the run counter and, per epoch, one line per run (epoch,
//! loss, accuracy, images/s, the time left for the run and the grid). On a terminal the counter
//! is an indicatif bar with a live line per worker under it; in a pipe or a Slurm log every
//! epoch is a plain line on stderr; with `--quiet` nothing is shown.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::spec::RunConfig;
use crate::train::EpochUpdate;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    /// indicatif bars on a terminal.
    Terminal,
    /// Plain lines on stderr.
    Lines,
}

impl Mode {
    /// `Quiet` when asked, `Terminal` when stderr is one, else `Lines`.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Lines
        }
    }
}

/// The grid's progress: its run counter, a line per worker and the time left.
pub struct GridProgress {
    mode: Mode,
    multi: MultiProgress,
    /// Runs looked at so far, of the shard's.
    pub bar: ProgressBar,
    /// Training images still to go over all pending runs, and those trained in this process.
    images: Mutex<(f64, f64)>,
    start: Instant,
}

impl GridProgress {
    /// Progress of `runs` runs that train `images_left` images in all (epochs × training set).
    pub fn new(runs: usize, images_left: f64, mode: Mode) -> Self {
        let target = match mode {
            Mode::Terminal => ProgressDrawTarget::stderr(),
            Mode::Quiet | Mode::Lines => ProgressDrawTarget::hidden(),
        };
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(runs as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .expect("valid template"),
        );
        GridProgress {
            mode,
            multi,
            bar,
            images: Mutex::new((images_left, 0.0)),
            start: Instant::now(),
        }
    }

    /// A worker's live line under the counter (drawn only on a terminal).
    pub fn worker_line(&self) -> ProgressBar {
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(ProgressStyle::with_template("  {msg}").expect("valid template"));
        line
    }

    /// Takes `images` off what is left to train (a run skipped, failed, or resumed past some
    /// epochs).
    pub fn forget(&self, images: f64) {
        let mut left = self.images.lock().expect("images");
        left.0 = (left.0 - images).max(0.0);
    }

    /// A message about a run (diverged, failed): above the bars, or as a line on stderr.
    pub fn notice(&self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Terminal => self.bar.println(text),
            Mode::Lines => eprintln!("{text}"),
        }
    }

    /// Shows a run's update on its worker's `line` (or as a line on stderr).
    pub fn show(&self, line: &ProgressBar, config: &RunConfig, update: &EpochUpdate) {
        let done = update.history.len();
        let images = update.images as f64;
        let text = if update.trained {
            let grid_left = {
                let mut counts = self.images.lock().expect("images");
                counts.0 = (counts.0 - images).max(0.0);
                counts.1 += images;
                counts.0 * self.start.elapsed().as_secs_f64() / counts.1
            };
            let run_left = (update.epochs - done) as f64 * update.attempt_seconds
                / update.attempt_epochs.max(1) as f64;
            epoch_text(update, run_left, grid_left)
        } else {
            self.forget(done as f64 * images);
            match done {
                0 => format!("training {} epochs", update.epochs),
                _ => format!("resuming after epoch {done}/{}", update.epochs),
            }
        };
        let text = format!("{}: {text}", run_label(config));
        match self.mode {
            Mode::Quiet => {}
            Mode::Terminal => line.set_message(text),
            Mode::Lines => eprintln!("{text}"),
        }
    }
}

/// `run <id> <method> <split> seed <s>`.
pub fn run_label(config: &RunConfig) -> String {
    format!(
        "run {} {} {} seed {}",
        config.run_id(),
        config.method.display_name(),
        config.split.slug(),
        config.seed
    )
}

/// `epoch 3/30 loss 1.234 acc 0.871 (val) 12,345 img/s ETA run 0:42 grid 12:10`.
pub fn epoch_text(update: &EpochUpdate, run_left: f64, grid_left: f64) -> String {
    let last = update.history.last().expect("an epoch was trained");
    let (acc, which) = match last.val_accuracy {
        Some(v) => (v, "val"),
        None => (last.test_accuracy, "test"),
    };
    let rate = update.images as f64 / update.epoch_seconds.max(1e-9);
    format!(
        "epoch {}/{} loss {:.3} acc {acc:.3} ({which}) {} img/s ETA run {} grid {}",
        last.epoch,
        update.epochs,
        last.train_loss,
        thousands(rate.round() as u64),
        clock(run_left),
        clock(grid_left)
    )
}

/// 12345 → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `m:ss`, or `h:mm:ss` from an hour on (rounded to the second).
pub fn clock(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0).round() as u64
    } else {
        0
    };
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EpochRecord;

    #[test]
    fn epoch_lines_say_epoch_loss_accuracy_rate_and_time_left() {
        let history: Vec<EpochRecord> = (1..=3)
            .map(|n| EpochRecord {
                epoch: n,
                train_loss: 1.2344,
                test_accuracy: 0.5,
                val_accuracy: Some(0.8714),
                ..EpochRecord::default()
            })
            .collect();
        let update = EpochUpdate {
            history: &history,
            epochs: 30,
            trained: true,
            images: 12_345,
            epoch_seconds: 1.0,
            attempt_seconds: 3.0,
            attempt_epochs: 3,
        };
        assert_eq!(
            epoch_text(&update, 42.4, 730.0),
            "epoch 3/30 loss 1.234 acc 0.871 (val) 12,345 img/s ETA run 0:42 grid 12:10"
        );
        let no_val: Vec<EpochRecord> = history
            .iter()
            .map(|r| EpochRecord {
                val_accuracy: None,
                ..r.clone()
            })
            .collect();
        let update = EpochUpdate {
            history: &no_val,
            epoch_seconds: 4.0,
            ..update
        };
        assert_eq!(
            epoch_text(&update, 3725.0, f64::NAN),
            "epoch 3/30 loss 1.234 acc 0.500 (test) 3,086 img/s ETA run 1:02:05 grid 0:00"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
