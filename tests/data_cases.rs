//! Hand-computed cases for the data pipeline and the beyond-the-test-set scores: class counts of
//! the splits, normalisation statistics, augmentation, every corruption's parameters, and OOD
//! scores of non-finite rows. Each was checked to fail on the bug named in its comment.

use icm::data::augment::{augment_image, Augment};
use icm::data::corrupt::corrupt;
use icm::data::splits::{long_tailed_counts, select, split_counts, Profile, Split};
use icm::data::{Corruption, Dataset, ImageShape, Normalize, Standardiser};
use icm::metrics::OodScore;
use rand::SeedableRng;

fn dataset(images: Vec<f32>, shape: ImageShape) -> Dataset {
    let n = images.len() / shape.numel();
    Dataset {
        images,
        labels: vec![0; n],
        shape,
        classes: 1,
        background: vec![0.0; shape.numel()],
    }
}

fn shape(channels: usize, height: usize, width: usize) -> ImageShape {
    ImageShape {
        channels,
        height,
        width,
    }
}

// ---------------------------------------------------------------------------------------------
// Splits

/// `profile: step` keeps n_max for the first ⌊C/2⌋ classes: with C = 5 that is 2 classes, the
/// other 3 get ⌊100/10⌋ = 10. (Mutant: `i < (classes + 1) / 2`, which gives 3 head classes; the
/// unit test's C = 10 cannot tell ⌊C/2⌋ from ⌈C/2⌉.)
#[test]
fn step_profile_keeps_floor_half_the_classes_with_an_odd_class_count() {
    assert_eq!(
        long_tailed_counts(100, 5, 10.0, Profile::Step),
        vec![100, 100, 10, 10, 10]
    );
    assert_eq!(
        long_tailed_counts(7, 3, 2.0, Profile::Step),
        vec![7, 3, 3],
        "⌊3/2⌋ = 1 head class; ⌊7/2⌋ = 3"
    );
}

/// Long-tailed counts start from the pool's smallest class, not class 0's count: pool
/// [50, 40, 60], ρ = 10 → n_max = 40, counts [40, ⌊40·10^(−1/2)⌋ = 12, ⌊40/10⌋ = 4]; step:
/// [40, 4, 4]. (Mutant: `long_tailed_counts(pool_counts[0], ..)` gives [50, 15, 5].)
#[test]
fn long_tailed_counts_start_from_the_smallest_pool_class() {
    let exp = Split::LongTailed {
        ratio: 10.0,
        profile: Profile::Exp,
    };
    assert_eq!(split_counts(&exp, &[50, 40, 60]).unwrap(), vec![40, 12, 4]);
    let step = Split::LongTailed {
        ratio: 10.0,
        profile: Profile::Step,
    };
    assert_eq!(split_counts(&step, &[50, 40, 60]).unwrap(), vec![40, 4, 4]);
}

/// Each class is shuffled with a generator of its own, seeded by (data seed, class): with 40
/// images labelled i mod 2 (class 0 at the even indices, class 1 at the odd ones, 20 each),
/// `per_class: 5` keeps 5 of each, and the positions kept within class 1 are not those kept
/// within class 0 (the same stream for both classes would keep exactly the same positions,
/// i.e. class 1's indices = class 0's + 1). (Mutant: `rng.set_stream(1)` for every class.)
#[test]
fn each_class_is_subsampled_with_its_own_stream() {
    let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
    for seed in 0..5 {
        let keep = select(&Split::PerClass { k: 5 }, &labels, 2, seed).unwrap();
        let within = |class: usize| -> Vec<usize> {
            keep.iter()
                .filter(|&&i| labels[i] == class)
                .map(|&i| i / 2)
                .collect()
        };
        let (zero, one) = (within(0), within(1));
        assert_eq!((zero.len(), one.len()), (5, 5));
        assert_ne!(
            zero, one,
            "data seed {seed}: the classes kept the same positions"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation statistics

/// Per-channel statistics pool each channel's pixels over images *and* positions. Two 2 × 1 × 2
/// images: channel 0 is [0, 4] in both (every pixel constant, the channel's values {0, 4, 0, 4}:
/// mean 2, std 2); channel 1 is [1, 1] then [3, 3] (mean 2, std 1). Normalising [4, 0 | 3, 1]
/// gives [1, −1 | 1, −1]; a black pixel becomes [−1, −1 | −2, −2]. Per pixel the same pool gives
/// means [0, 4, 2, 2] and stds [1 (constant), 1 (constant), 1, 1]. (Mutant: the channel variance
/// as the mean of the per-pixel variances, dropping the spread of the pixel means: channel 0
/// then gets std 1 and [4, 0] → [2, −2].)
#[test]
fn per_channel_statistics_pool_positions_and_images() {
    let s = shape(2, 1, 2);
    let train = dataset(vec![0.0, 4.0, 1.0, 1.0, 0.0, 4.0, 3.0, 3.0], s);
    let stats = Standardiser::fit(&train, Normalize::PerChannel);
    let mut test = dataset(vec![4.0, 0.0, 3.0, 1.0], s);
    stats.apply(&mut test);
    assert_eq!(test.images, vec![1.0, -1.0, 1.0, -1.0]);
    assert_eq!(test.background, vec![-1.0, -1.0, -2.0, -2.0]);

    let stats = Standardiser::fit(&train, Normalize::PerPixel);
    let mut test = dataset(vec![4.0, 0.0, 3.0, 1.0], s);
    stats.apply(&mut test);
    assert_eq!(test.images, vec![4.0, -4.0, 1.0, -1.0]);
}

// ---------------------------------------------------------------------------------------------
// Augmentation

/// A 1 × 1 × 3 image [1, 2, 3] with a different black value per pixel, background [−1, −2, −3],
/// cropped with 1 pixel of padding (no flip). The offsets dy, dx are uniform over {0, 1, 2}; with
/// one row only dy = 1 keeps the image, so the outputs are exactly: all background
/// [−1, −2, −3] (dy = 0 or 2), [−1, 1, 2] (dx = 0), [1, 2, 3] (dx = 1) and [2, 3, −3] (dx = 2):
/// each output pixel outside the image is that pixel's own background. Over 200 seeds all four
/// appear. (Mutants: offsets drawn from 0..2p instead of 0..=2p never give [2, 3, −3]; the
/// background read at the channel's first pixel gives [2, 3, −1].)
#[test]
fn crop_offsets_cover_0_to_2p_and_fill_each_pixels_own_background() {
    let s = shape(1, 1, 3);
    let bg = [-1.0f32, -2.0, -3.0];
    let aug = Augment {
        crop_padding: 1,
        flip: false,
    };
    let allowed: [[f32; 3]; 4] = [
        [-1.0, -2.0, -3.0],
        [-1.0, 1.0, 2.0],
        [1.0, 2.0, 3.0],
        [2.0, 3.0, -3.0],
    ];
    let mut seen = [false; 4];
    for seed in 0..200 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut img = vec![1.0f32, 2.0, 3.0];
        augment_image(&mut img, s, &aug, &bg, &mut rng);
        let k = allowed
            .iter()
            .position(|a| a[..] == img[..])
            .unwrap_or_else(|| panic!("seed {seed}: unexpected crop {img:?}"));
        seen[k] = true;
    }
    assert_eq!(seen, [true; 4], "every offset 0..=2p appears");
}

/// The flip happens with probability ½: over 4,000 seeded images (flip only) the share mirrored
/// is within 0.45..0.55 (the binomial standard deviation is 0.008). (Mutant: `gen_bool(0.25)`.)
#[test]
fn flips_happen_half_the_time() {
    let s = shape(1, 1, 2);
    let aug = Augment {
        crop_padding: 0,
        flip: true,
    };
    let mut flipped = 0;
    for seed in 0..4000 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut img = vec![1.0f32, 2.0];
        augment_image(&mut img, s, &aug, &[0.0, 0.0], &mut rng);
        assert!(img == [1.0, 2.0] || img == [2.0, 1.0], "{img:?}");
        flipped += (img == [2.0, 1.0]) as usize;
    }
    let share = flipped as f64 / 4000.0;
    assert!((0.45..=0.55).contains(&share), "flipped share {share}");
}

// ---------------------------------------------------------------------------------------------
// Corruptions

/// Gaussian and shot noise follow x + σ_s z and x + sqrt(x/λ_s) z with the same z at every
/// severity (common random numbers), σ = 0.08, 0.12, 0.18, 0.26, 0.38 and λ = 60, 25, 12, 5, 3.
/// On 256 pixels of 0.5, z is read off severity 1 and every unclipped pixel of severities 2–5 is
/// predicted from it; z has mean square ≈ 1 (so σ₁ itself is 0.08). Brightness and contrast at
/// every severity too. (Mutant: σ₃ = 0.16 instead of 0.18.)
#[test]
fn noise_severities_have_their_documented_parameters() {
    let s = shape(1, 16, 16);
    let data = dataset(vec![0.5; 256], s);
    let sigma = [0.08, 0.12, 0.18, 0.26, 0.38];
    let lambda = [60.0, 25.0, 12.0, 5.0, 3.0];
    for (c, scale) in [
        (Corruption::GaussianNoise, sigma.map(|v: f64| v)),
        (Corruption::ShotNoise, lambda.map(|l: f64| (0.5 / l).sqrt())),
    ] {
        let first = corrupt(&data, c, 1, 3).images;
        let z: Vec<f64> = first.iter().map(|&x| (x as f64 - 0.5) / scale[0]).collect();
        let mean_square = z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64;
        assert!(
            (0.8..1.2).contains(&mean_square),
            "{c:?}: E[z²] {mean_square}"
        );
        for sev in 2..=5u8 {
            let out = corrupt(&data, c, sev, 3).images;
            let mut checked = 0;
            for (&x, &zi) in out.iter().zip(&z) {
                if x > 0.0 && x < 1.0 {
                    let want = 0.5 + scale[sev as usize - 1] * zi;
                    assert!(
                        (x as f64 - want).abs() < 2e-5,
                        "{c:?} s{sev}: {x} vs {want}"
                    );
                    checked += 1;
                }
            }
            assert!(checked > 200, "{c:?} s{sev}: {checked} unclipped pixels");
        }
    }
    let one = dataset(vec![0.25, 0.75], shape(1, 1, 2));
    for (sev, b) in [(1u8, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)] {
        let out = corrupt(&one, Corruption::Brightness, sev, 0).images;
        assert_eq!(
            out,
            vec![(0.25 + b) as f32, ((0.75f64 + b).min(1.0)) as f32]
        );
    }
    for (sev, f) in [(1u8, 0.75), (2, 0.5), (3, 0.4), (4, 0.3), (5, 0.15)] {
        let out = corrupt(&one, Corruption::Contrast, sev, 0).images;
        assert_eq!(
            out,
            vec![(0.5 - 0.25 * f) as f32, (0.5 + 0.25 * f) as f32],
            "contrast severity {sev}"
        );
    }
}

/// Contrast pulls each channel towards its own mean: channel 0 [0.25, 0.75] (mean 0.5) becomes
/// [0.375, 0.625] at severity 2 (factor 0.5), channel 1 [1, 1] (mean 1) stays. (Mutant: one
/// mean over the whole image, 0.75, gives [0.5, 0.75 | 0.875, 0.875].)
#[test]
fn contrast_uses_each_channels_own_mean() {
    let data = dataset(vec![0.25, 0.75, 1.0, 1.0], shape(2, 1, 2));
    assert_eq!(
        corrupt(&data, Corruption::Contrast, 2, 0).images,
        vec![0.375, 0.625, 1.0, 1.0]
    );
}

/// Pixelate at severity 2 (f = 0.6) on an 8-pixel line uses round(0.6 · 8) = 5 blocks; pixel y
/// falls in block ⌊5y/8⌋ = 0, 0, 1, 1, 2, 3, 3, 4. Pixels k/8 become their block means
/// [0.5, 0.5, 2.5, 2.5, 4, 5.5, 5.5, 7]/8, along a column (8 × 1) and along a row (1 × 8).
/// (Mutant: ⌊0.6 · 8⌋ = 4 blocks along the height: pairs, [0.5, 0.5, 2.5, 2.5, 4.5, ...].)
#[test]
fn pixelate_rounds_the_grid_size() {
    let line: Vec<f32> = (0..8).map(|k| k as f32 / 8.0).collect();
    let want: Vec<f32> = [0.5, 0.5, 2.5, 2.5, 4.0, 5.5, 5.5, 7.0]
        .iter()
        .map(|v| v / 8.0)
        .collect();
    for s in [shape(1, 8, 1), shape(1, 1, 8)] {
        let data = dataset(line.clone(), s);
        assert_eq!(
            corrupt(&data, Corruption::Pixelate, 2, 0).images,
            want,
            "{s:?}"
        );
    }
}

/// Rotation turns about the image centre ((H−1)/2, (W−1)/2). A 3 × 3 image with only its
/// centre lit, rotated by 30° (severity 5, either direction): the centre stays 1, the corners get
/// nothing, and each edge pixel gets the bilinear weight (1 − cos 30°)(1 − sin 30°) =
/// 0.5·(1 − √3/2) ≈ 0.0670. (Mutant: the centre at (H/2, W/2) moves the bright pixel.)
#[test]
fn rotation_turns_about_the_centre() {
    let mut img = vec![0.0f32; 9];
    img[4] = 1.0;
    let data = dataset(img, shape(1, 3, 3));
    let e = 0.5 * (1.0 - 3f64.sqrt() / 2.0);
    let want = [0.0, e, 0.0, e, 1.0, e, 0.0, e, 0.0];
    for seed in 0..4 {
        let out = corrupt(&data, Corruption::Rotate, 5, seed).images;
        for (o, w) in out.iter().zip(want) {
            assert!((*o as f64 - w).abs() < 1e-6, "seed {seed}: {out:?}");
        }
    }
}

/// Blur's σ is in pixels for images up to 28 pixels: a 1 × 1 × 3 line [0, 1, 0] at severity 4
/// (σ = 1.0; radius 3, edges clamped) keeps 1 / Σ_{k=−3..3} e^{−k²/2} = 0.39905 in its middle;
/// the height of 1 makes the vertical pass the identity. (The bug: σ scaled by max(H, W)/28 on
/// every image, so 3/28 px here and the line barely changed.)
#[test]
fn blur_sigma_is_in_pixels_for_images_up_to_28_pixels() {
    let data = dataset(vec![0.0, 1.0, 0.0], shape(1, 1, 3));
    let total: f64 = (-3i32..=3).map(|k| (-(k * k) as f64 / 2.0).exp()).sum();
    let out = corrupt(&data, Corruption::GaussianBlur, 4, 0).images;
    assert!(
        (out[1] as f64 - 1.0 / total).abs() < 1e-6,
        "{out:?} vs middle {}",
        1.0 / total
    );
}

// ---------------------------------------------------------------------------------------------
// OOD scores

/// A row whose largest logit is +∞ has max logit and energy +∞; a row of −∞ logits has max logit
/// and energy −∞ (log 0), never NaN, so such images sort to the ends instead of poisoning the
/// ranks. (Mutant: without the early return for a non-finite maximum, exp(∞ − ∞) makes every
/// score NaN.)
#[test]
fn infinite_logit_rows_score_infinite_not_nan() {
    let inf = f32::INFINITY;
    for score in [OodScore::MaxLogit, OodScore::Energy] {
        assert_eq!(
            score.scores(&[inf, 0.0], 2),
            vec![f64::INFINITY],
            "{score:?}"
        );
        assert_eq!(
            score.scores(&[-inf, -inf], 2),
            vec![f64::NEG_INFINITY],
            "{score:?}"
        );
    }
    // MSP stays a probability: such a row is scored as uniform, 1/C.
    assert_eq!(OodScore::Msp.scores(&[inf, 0.0, 1.0, -inf], 4), vec![0.25]);
}
