//! The broken-input corpus (`tests/corpus/<case>/`, format in `tests/corpus/README.md`): every
//! case runs the real `icm` binary on its input and must end as its `expect` file says, either
//! refused with a clear error (the given substrings: file, place, fix) or accepted. No input may
//! panic, and no input meant to be refused may be accepted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What a case expects, from its `expect` file.
#[derive(Default)]
struct Expect {
    /// `icm` arguments, e.g. `data experiment.yaml`.
    command: Vec<String>,
    /// Train the grid before the command (damaged results folders).
    setup_run: bool,
    /// (file in the first run folder, replacement file in the case folder or `delete`).
    damage: Vec<(String, String)>,
    /// Substrings of stderr; with any, the command must fail.
    errors: Vec<String>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// (file under the case's working folder, substring).
    files: Vec<(String, String)>,
}

fn parse_expect(text: &str) -> Expect {
    let mut e = Expect::default();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line.split_once(':').expect("`key: value` lines");
        let value = value.trim().to_string();
        match key {
            "command" => e.command = value.split_whitespace().map(str::to_string).collect(),
            "setup" => e.setup_run = value == "run",
            "damage" => {
                let (file, with) = value.split_once(' ').expect("damage: FILE WITH");
                e.damage.push((file.into(), with.into()));
            }
            "error" => e.errors.push(value),
            "stdout" => e.stdout.push(value),
            "stderr" => e.stderr.push(value),
            "file" => {
                let (file, what) = value.split_once(' ').expect("file: PATH TEXT");
                e.files.push((file.into(), what.into()));
            }
            other => panic!("unknown expect key `{other}`"),
        }
    }
    e
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn icm(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_icm"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The first run folder (by name) of the results.
fn first_run(dir: &Path) -> PathBuf {
    let exp = dir.join("results");
    let grid = fs::read_dir(&exp).unwrap().flatten().next().unwrap().path();
    let mut runs: Vec<PathBuf> = fs::read_dir(grid)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    runs.sort();
    runs.remove(0)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    ClearError,
    Accepted,
    Panic(String),
    SilentlyAccepted,
    Unclear(String),
}

fn run_case(case: &Path, work: &Path) -> Outcome {
    copy_tree(case, work);
    let expect = parse_expect(&fs::read_to_string(case.join("expect")).unwrap());
    if expect.setup_run {
        let out = icm(
            work,
            &["run", "experiment.yaml", "--quiet", "--no-report"].map(String::from),
        );
        assert!(out.status.success(), "{}: setup run failed", case.display());
        let run = first_run(work);
        for (file, with) in &expect.damage {
            if with == "delete" {
                fs::remove_file(run.join(file)).unwrap();
            } else {
                fs::copy(case.join(with), run.join(file)).unwrap();
            }
        }
    }
    let out = icm(work, &expect.command);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") || out.status.code().is_none_or(|c| c == 101) {
        return Outcome::Panic(stderr.into());
    }
    let missing = |wanted: &[String], text: &str| -> Option<String> {
        wanted.iter().find(|w| !text.contains(w.as_str())).cloned()
    };
    if !expect.errors.is_empty() {
        if out.status.success() {
            return Outcome::SilentlyAccepted;
        }
        return match missing(&expect.errors, &stderr) {
            Some(w) => Outcome::Unclear(format!("stderr lacks `{w}`: {stderr}")),
            None => Outcome::ClearError,
        };
    }
    if !out.status.success() {
        return Outcome::Unclear(format!("refused an input to accept: {stderr}"));
    }
    let unmet = missing(&expect.stdout, &stdout)
        .map(|w| format!("stdout lacks `{w}`: {stdout}"))
        .or_else(|| {
            missing(&expect.stderr, &stderr).map(|w| format!("stderr lacks `{w}`: {stderr}"))
        })
        .or_else(|| {
            expect.files.iter().find_map(|(file, what)| {
                let text = fs::read_to_string(work.join(file)).unwrap_or_default();
                (!text.contains(what.as_str())).then(|| format!("{file} lacks `{what}`"))
            })
        });
    match unmet {
        Some(why) => Outcome::Unclear(why),
        None => Outcome::Accepted,
    }
}

#[test]
fn every_broken_input_is_refused_clearly_or_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expect").is_file())
        .collect();
    cases.sort();
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut clear, mut accepted, mut panics, mut silent) = (0, 0, 0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        match run_case(case, &tmp.path().join(&name)) {
            Outcome::ClearError => clear += 1,
            Outcome::Accepted => accepted += 1,
            Outcome::Panic(e) => {
                panics += 1;
                failures.push(format!("{name}: panicked: {e}"));
            }
            Outcome::SilentlyAccepted => {
                silent += 1;
                failures.push(format!("{name}: accepted, but must be refused"));
            }
            Outcome::Unclear(why) => failures.push(format!("{name}: {why}")),
        }
    }
    println!(
        "corpus: {} inputs, {clear} clear errors, {accepted} accepted as expected, {panics} panics, \
         {silent} silently accepted",
        cases.len()
    );
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
