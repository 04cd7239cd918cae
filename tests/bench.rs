//! `icm bench --against`: the comparison line and its errors. The numbers themselves are not
//! asserted (speed goals are benchmarks, not tests); their consistency is.

use std::process::Command;

fn icm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_icm"))
        .args(args)
        .output()
        .expect("icm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TINY: &[&str] = &[
    "bench",
    "--model",
    "mlp",
    "--hidden",
    "8",
    "--input",
    "1x4x4",
    "--batch",
    "8",
    "--steps",
    "6",
    "--warmup",
    "1",
    "--threads",
    "1",
];

fn tiny(extra: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = TINY.iter().chain(extra).copied().collect();
    icm(&args)
}

#[test]
fn against_prints_the_median_ratio_of_the_asked_rounds() {
    let (ok, out, err) = tiny(&["--against", "mixup", "--rounds", "3"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("icm-mixup vs mixup: step time ratio "))
        .unwrap_or_else(|| panic!("no comparison line in:\n{out}"));
    assert!(
        line.contains(" (median of 3 alternating rounds; "),
        "{line}"
    );
    // "ratio R (median of 3 alternating rounds; MIN–MAX), A vs B ms"
    let number = |text: &str| {
        text.trim()
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{line}"))
    };
    let ratio = number(
        line.split("ratio ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap(),
    );
    let range = line
        .split("rounds; ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let (min, max) = range.split_once('–').unwrap();
    let (min, max) = (number(min), number(max));
    assert!(0.0 < min && min <= ratio && ratio <= max, "{line}");
    assert!(line.ends_with(" ms"), "{line}");
}

#[test]
fn against_refuses_an_unknown_method_and_zero_rounds() {
    let (ok, _, err) = tiny(&["--against", "mixupp"]);
    assert!(!ok);
    assert!(
        err.contains("--against `mixupp`: unknown variant `mixupp`"),
        "{err}"
    );
    let (ok, _, err) = tiny(&["--against", "mixup", "--rounds", "0"]);
    assert!(!ok);
    assert!(
        err.contains("--rounds") && err.contains("at least 1"),
        "{err}"
    );
}
