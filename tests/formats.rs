//! Dataset files: exact round trips for the MNIST idx and CIFAR binary formats, and clear errors
//! for missing, truncated or malformed files.

use std::fs;
use std::io::Write;
use std::path::Path;

use icm::data::sources::cifar::{load_cifar10, load_cifar100, Cifar10, Cifar100Labels};
use icm::data::sources::idx;
use icm::data::sources::idx::{FashionMnist, Idx};
use icm::data::DatasetSpec;
use icm::grid::runner::RunOptions;
use icm::spec::parse_experiment;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes an idx folder with `n_train`/`n_test` 3×2 images; pixel p of image i is (7i + p) mod 256.
fn write_idx(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n * 6)
            .map(|k| ((7 * (k / 6) + k % 6) % 256) as u8)
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let files = [
            (
                format!("{prefix}-images-idx3-ubyte"),
                idx::encode_images(3, 2, &pixels),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte"),
                idx::encode_labels(&labels),
            ),
        ];
        for (name, bytes) in files {
            if gzip {
                fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    for gzip in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        write_idx(tmp.path(), 20, 10, gzip);
        let (train, test) = idx::load(tmp.path()).unwrap();
        assert_eq!((train.len(), test.len()), (20, 10));
        assert_eq!(
            (train.shape.height, train.shape.width, train.shape.channels),
            (3, 2, 1)
        );
        assert_eq!(train.labels[13], 3);
        // Image 5, pixel 4: (35 + 4) / 255.
        assert_eq!(train.image(5)[4], 39.0 / 255.0);
        assert_eq!(test.image(9)[0], 63.0 / 255.0);
    }
}

#[test]
fn idx_errors_name_file_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let err = format!("{:#}", idx::load(&tmp.path().join("nope")).unwrap_err());
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("dataset-fashion-mnist"),
        "{err}"
    );

    write_idx(tmp.path(), 4, 2, false);
    let images = tmp.path().join("train-images-idx3-ubyte");
    let bytes = fs::read(&images).unwrap();
    fs::write(&images, &bytes[..bytes.len() - 5]).unwrap();
    let err = format!("{:#}", idx::load(tmp.path()).unwrap_err());
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("need 40 bytes, the file has 35"),
        "{err}"
    );

    let mut bad = bytes.clone();
    bad[3] = 0x01;
    fs::write(&images, &bad).unwrap();
    let err = format!("{:#}", idx::load(tmp.path()).unwrap_err());
    assert!(err.contains("bad idx magic 0x00000801 at byte 0"), "{err}");

    fs::write(&images, &bytes).unwrap();
    fs::write(
        tmp.path().join("train-labels-idx1-ubyte"),
        idx::encode_labels(&[0, 1, 12, 3]),
    )
    .unwrap();
    let err = format!("{:#}", idx::load(tmp.path()).unwrap_err());
    assert!(err.contains("label 12 at byte 10 is out of range"), "{err}");
}

/// CIFAR records: label byte(s), then the R plane, the G plane and the B plane (32×32 each).
fn cifar_record(labels: &[u8], r: u8, g: u8, b: u8) -> Vec<u8> {
    let mut rec = labels.to_vec();
    for v in [r, g, b] {
        rec.extend(std::iter::repeat_n(v, 1024));
    }
    rec
}

#[test]
fn cifar10_round_trip_keeps_plane_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    fs::create_dir_all(&dir).unwrap();
    for k in 1..=5u8 {
        let mut bytes = cifar_record(&[k], 10, 20, 30);
        bytes.extend(cifar_record(&[9], 1, 2, 3));
        fs::write(dir.join(format!("data_batch_{k}.bin")), bytes).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), cifar_record(&[7], 255, 0, 128)).unwrap();
    let (train, test) = load_cifar10(tmp.path()).unwrap();
    assert_eq!((train.len(), test.len(), train.classes), (10, 1, 10));
    assert_eq!(train.labels, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    let img = train.image(0);
    assert_eq!(
        (img[0], img[1024], img[2048]),
        (10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0)
    );
    assert_eq!(test.image(0)[3071], 128.0 / 255.0);

    fs::write(dir.join("test_batch.bin"), vec![0u8; 3074]).unwrap();
    let err = format!("{:#}", load_cifar10(tmp.path()).unwrap_err());
    assert!(
        err.contains("test_batch.bin") && err.contains("ends at byte 3073"),
        "{err}"
    );
    fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let err = format!("{:#}", load_cifar10(&dir).unwrap_err());
    assert!(
        err.contains("missing") && err.contains("data_batch_3.bin"),
        "{err}"
    );
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-100-binary");
    fs::create_dir_all(&dir).unwrap();
    let mut train = cifar_record(&[3, 42], 5, 6, 7);
    train.extend(cifar_record(&[19, 99], 0, 0, 0));
    fs::write(dir.join("train.bin"), train).unwrap();
    fs::write(dir.join("test.bin"), cifar_record(&[0, 1], 0, 0, 0)).unwrap();
    let (fine, _) = load_cifar100(tmp.path(), Cifar100Labels::Fine).unwrap();
    let (coarse, test) = load_cifar100(tmp.path(), Cifar100Labels::Coarse).unwrap();
    assert_eq!((fine.labels.clone(), fine.classes), (vec![42, 99], 100));
    assert_eq!((coarse.labels.clone(), coarse.classes), (vec![3, 19], 20));
    assert_eq!(test.labels, vec![0]);
    assert_eq!(fine.image(0)[1024], 6.0 / 255.0);
}

const GRID: &str = "\
name: fmt
dataset: DATASET
splits: [balanced]
model: {arch: mlp, hidden: [8]}
train: {epochs: 3, batch_size: 16, lr: 0.05}
methods: [erm, icm-mixup]
seeds: [0]
";

#[test]
fn dataset_yaml_forms() {
    let parse = |d: &str| parse_experiment(&GRID.replace("DATASET", d), Path::new("x.yaml"));
    assert_eq!(parse("digits").unwrap().dataset, DatasetSpec::default());
    let fm = parse("fashion-mnist").unwrap().dataset;
    assert_eq!(
        fm,
        DatasetSpec::FashionMnist(FashionMnist {
            root: "/usr/share/datasets/fashion-mnist".into()
        })
    );
    let a = parse("{idx: {root: /data/a}}").unwrap();
    let b = parse("{idx: {root: /elsewhere/b}}").unwrap();
    assert_eq!(
        a.runs()[0].run_id(),
        b.runs()[0].run_id(),
        "the data folder is not part of the id"
    );
    let c = parse("{cifar100: {root: /c, labels: coarse}}").unwrap();
    assert_eq!(c.dataset.name(), "cifar100-coarse");
    // CIFAR defaults to the official crop-and-flip augmentation; digits and idx to none.
    let aug = c.train.augment.unwrap();
    assert_eq!((aug.crop_padding, aug.flip), (4, true));
    assert_eq!(parse("digits").unwrap().train.augment, None);
    let off = GRID.replace("DATASET", "{cifar10: {root: /c}}").replace(
        "lr: 0.05}",
        "lr: 0.05, augment: {crop_padding: 0, flip: false}}",
    );
    let off = parse_experiment(&off, Path::new("x.yaml")).unwrap();
    assert_eq!(off.train.augment, None, "explicitly off");
    let err = format!("{:#}", parse("fashion-mnst").unwrap_err());
    assert!(err.contains("did you mean `fashion-mnist`"), "{err}");
    let err = format!("{:#}", parse("cifar10").unwrap_err());
    assert!(err.contains("cifar10: {root:"), "{err}");
}

#[test]
fn trains_on_an_idx_folder_and_fails_early_on_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mnist-like");
    write_idx(&data, 200, 50, true);
    let yaml = GRID.replace("DATASET", &format!("{{idx: {{root: {}}}}}", data.display()));
    let exp = parse_experiment(&yaml, Path::new("x.yaml")).unwrap();
    let summary =
        icm::grid::runner::run_grid(&exp, &tmp.path().join("results"), &RunOptions::default())
            .unwrap();
    assert_eq!((summary.trained, summary.failed.len()), (2, 0));
    let text = icm::grid::runner::describe_data(&exp).unwrap();
    assert!(text.contains("training pool 200, test set 50"), "{text}");

    let missing = yaml.replace("mnist-like", "absent");
    let exp = parse_experiment(&missing, Path::new("x.yaml")).unwrap();
    let err = format!(
        "{:#}",
        icm::grid::runner::run_grid(
            &exp,
            &tmp.path().join("r2"),
            &icm::grid::runner::RunOptions::default()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("x.yaml: dataset `idx`") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !tmp.path().join("r2").exists(),
        "nothing written before the data is checked"
    );
}

/// Writes an 4×4 RGB PNG whose every pixel is `rgb`.
fn png(path: &Path, rgb: [u8; 3]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn image_folders_with_and_without_split_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("birds");
    for i in 0..5 {
        png(&root.join(format!("crow/{i}.png")), [0, 0, 255]);
        png(&root.join(format!("robin/{i}.png")), [255, 0, 0]);
    }
    // Class folders in name order (crow = 0, robin = 1); 20 % of each class held out.
    let (train, test) = icm::data::sources::folder::load(&root, 2, 0.2).unwrap();
    assert_eq!((train.len(), test.len(), train.classes), (8, 2, 2));
    assert_eq!(test.class_counts(), vec![1, 1]);
    assert_eq!(
        (train.shape.channels, train.shape.height, train.shape.width),
        (3, 2, 2)
    );
    let crow = train.labels.iter().position(|&y| y == 0).unwrap();
    // Channel-major: R plane, G plane, B plane; a blue crow is (0, 0, 1).
    assert_eq!(
        train.image(crow),
        &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    );

    // CUB-style split files take precedence.
    fs::create_dir_all(root.join("splits")).unwrap();
    fs::write(
        root.join("splits/trainval.txt"),
        "crow/0.png 0\nrobin/0.png 1\nrobin/1.png 1\n",
    )
    .unwrap();
    fs::write(root.join("splits/test.txt"), "crow/1.png 0\n").unwrap();
    let (train, test) = icm::data::sources::folder::load(&root, 2, 0.2).unwrap();
    assert_eq!(
        (train.labels.clone(), test.labels.clone()),
        (vec![0, 1, 1], vec![0])
    );

    // An image that does not decode is named.
    fs::write(root.join("crow/0.png"), b"not a png").unwrap();
    let err = format!(
        "{:#}",
        icm::data::sources::folder::load(&root, 2, 0.2).unwrap_err()
    );
    assert!(
        err.contains("cannot decode image") && err.contains("crow/0.png"),
        "{err}"
    );
    fs::write(root.join("splits/test.txt"), "crow/1.png zero\n").unwrap();
    let err = format!(
        "{:#}",
        icm::data::sources::folder::load(&root, 2, 0.2).unwrap_err()
    );
    assert!(
        err.contains("test.txt:1") && err.contains("relative/path label"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        icm::data::sources::folder::load(&tmp.path().join("none"), 2, 0.2).unwrap_err()
    );
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn per_channel_normalisation_and_padding() {
    use icm::data::{load, Normalize, Preprocess};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    fs::create_dir_all(&dir).unwrap();
    for k in 1..=5u8 {
        let mut bytes = cifar_record(&[k], 10 * k, 20, 30 + k);
        bytes.extend(cifar_record(&[9], 200, 2, 3));
        fs::write(dir.join(format!("data_batch_{k}.bin")), bytes).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), cifar_record(&[7], 255, 0, 128)).unwrap();
    let spec = DatasetSpec::Cifar10(Cifar10 {
        root: tmp.path().to_path_buf(),
    });
    // CIFAR's default: per-channel.
    let exp = parse_experiment(
        &GRID.replace(
            "DATASET",
            &format!("{{cifar10: {{root: {}}}}}", tmp.path().display()),
        ),
        Path::new("x.yaml"),
    )
    .unwrap();
    assert_eq!(exp.preprocess.normalize, Normalize::PerChannel);
    let data = load(&spec, &exp.preprocess).unwrap();
    let plane = 1024;
    for c in 0..3 {
        let vals: Vec<f64> = (0..data.train.len())
            .flat_map(|i| data.train.image(i)[c * plane..(c + 1) * plane].to_vec())
            .map(|v| v as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "channel {c}: {mean} {var}"
        );
    }
    // Padding 3×2 idx images to 4×4: the image sits centred (rows 0..3 → 0..3 offset 0,
    // columns offset 1), the border is a raw black pixel.
    let idx_dir = tmp.path().join("idx");
    write_idx(&idx_dir, 20, 10, false);
    let pre = Preprocess {
        normalize: Normalize::PerPixel,
        pad_to: Some(4),
    };
    let padded = load(
        &DatasetSpec::Idx(Idx {
            root: idx_dir.clone(),
        }),
        &pre,
    )
    .unwrap();
    assert_eq!(
        (padded.train.shape.height, padded.train.shape.width),
        (4, 4)
    );
    assert_eq!(
        padded.train.image(0)[0],
        padded.train.background[0],
        "corner is padding"
    );
    let err = load(
        &DatasetSpec::Idx(Idx { root: idx_dir }),
        &Preprocess {
            normalize: Normalize::PerPixel,
            pad_to: Some(2),
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("smaller than the images"),
        "{err:#}"
    );
}
