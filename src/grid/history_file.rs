//! `history.csv` of a running run, kept current epoch by epoch so a run can be inspected and
//! plotted while it trains (`records::read_history_so_far` reads it): each epoch appends its
//! line, flushed and fsynced, so a killed run leaves a readable prefix (at worst a torn last
//! line without its newline). The first write of every attempt rewrites the file whole,
//! atomically, to exactly the history the attempt starts from: a resumed run drops the epochs
//! its killed attempt trained past its checkpoint, and any torn line. The finished run's file is
//! written once more with its record, byte for byte the same.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::records::{history_csv, history_line};
use crate::train::EpochRecord;
use crate::util::write_atomic;

/// Writes one run's `history.csv` as its epochs come.
#[derive(Debug)]
pub struct HistoryLog {
    path: PathBuf,
    /// Epochs this log has put in the file; `None` before its first write.
    written: Option<usize>,
}

impl HistoryLog {
    pub fn new(path: PathBuf) -> Self {
        HistoryLog {
            path,
            written: None,
        }
    }

    /// Brings the file to exactly `history`: appends the one new epoch when the file holds
    /// every earlier one (written by this log), else rewrites it whole, atomically.
    pub fn sync(&mut self, history: &[EpochRecord]) -> Result<()> {
        match self.written {
            Some(n) if n + 1 == history.len() && self.path.is_file() => {
                let mut file = OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .with_context(|| format!("cannot open {}", self.path.display()))?;
                file.write_all(history_line(&history[n]).as_bytes())
                    .and_then(|_| file.sync_data())
                    .with_context(|| format!("cannot append to {}", self.path.display()))?;
            }
            Some(n) if n == history.len() => {}
            _ => write_atomic(&self.path, history_csv(history).as_bytes())?,
        }
        self.written = Some(history.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::records::{read_history, read_history_so_far};

    fn epoch(n: usize) -> EpochRecord {
        EpochRecord {
            epoch: n,
            lr: 0.1 / n as f64,
            train_loss: 2.0 / n as f64,
            test_accuracy: 0.25 * n as f64,
            ..EpochRecord::default()
        }
    }

    #[test]
    fn appends_epochs_and_a_resume_rewrites_to_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("history.csv");
        let all: Vec<EpochRecord> = (1..=4).map(epoch).collect();
        let mut log = HistoryLog::new(path.clone());
        log.sync(&[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "epoch,lr,train_loss,test_accuracy,val_accuracy,grad_norm,max_grad_norm,max_logit,\
             max_score,duplicates\n"
        );
        for n in 1..=3 {
            log.sync(&all[..n]).unwrap();
            assert_eq!(read_history(&path).unwrap(), all[..n]);
        }
        // Killed while writing epoch 4's line: a torn line without its newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"4,0.025,0.5").unwrap();
        assert_eq!(read_history_so_far(&path).unwrap(), all[..3]);
        let err = format!("{:#}", read_history(&path).unwrap_err());
        assert!(
            err.contains("line 5: expected a number in column `test_accuracy`"),
            "{err}"
        );

        // The next attempt resumes from a checkpoint after epoch 2: its first write drops
        // epoch 3 and the torn line, then it appends again.
        let mut resumed = HistoryLog::new(path.clone());
        resumed.sync(&all[..2]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            history_csv(&all[..2])
        );
        resumed.sync(&all[..3]).unwrap();
        resumed.sync(&all).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), history_csv(&all));
    }
}
