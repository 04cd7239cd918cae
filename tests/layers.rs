//! The crate's layers depend one way only: a module may use its own layer and the layers below it
//! (see the table in `src/lib.rs`), never one above. This test reads `src/` and fails on any
//! `crate::<layer>` path that points upwards, and on a top-level module that belongs to no layer.

use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top.
const LAYERS: &[&str] = &[
    "util", "metrics", "data", "mix", "nn", "spec", "train", "grid", "report",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

/// The layers a line of code names through `crate::<layer>`.
fn used_layers(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .map(|(at, _)| {
            line[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Every upward use in `src`: (file, line number, the layer used).
fn upward_uses(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let own = match top.as_ref() {
            "lib.rs" | "main.rs" => continue,
            dir => rank(dir).unwrap_or_else(|| {
                panic!("src/{dir} belongs to no layer: add it to LAYERS and to src/lib.rs")
            }),
        };
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in used_layers(line) {
                if rank(&used).is_some_and(|r| r > own) {
                    found.push(format!(
                        "{}:{}: uses `crate::{used}`",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn layers_depend_only_downwards() {
    let found = upward_uses(Path::new("src"));
    assert!(
        found.is_empty(),
        "modules using a layer above their own:\n{}",
        found.join("\n")
    );
}

/// The check itself finds an upward use (a test that cannot fail would prove nothing).
#[test]
fn an_upward_use_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("metrics");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("mod.rs"),
        "// crate::report in a comment is fine\nuse crate::util::Matrix;\nuse crate::report::Table;\n",
    )
    .unwrap();
    let found = upward_uses(tmp.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("mod.rs:3: uses `crate::report`"),
        "{found:?}"
    );
}
