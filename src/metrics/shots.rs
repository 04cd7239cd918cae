//! Accuracy by how many training images a class had (long-tailed reports).

/// Accuracy of the many-shot (> 100 training images), medium-shot (20–100) and few-shot (< 20)
/// classes of a long-tailed split: the mean per-class test accuracy of each group (`None` for
/// an empty group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotAccuracy {
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
}

/// Classes without test images have no accuracy and are left out of their group.
pub fn shot_accuracies(per_class_accuracy: &[Option<f64>], train_counts: &[usize]) -> ShotAccuracy {
    let group = |keep: &dyn Fn(usize) -> bool| -> Option<f64> {
        let accs: Vec<f64> = per_class_accuracy
            .iter()
            .zip(train_counts)
            .filter(|(_, &n)| keep(n))
            .filter_map(|(&a, _)| a)
            .collect();
        (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
    };
    ShotAccuracy {
        many: group(&|n| n > 100),
        medium: group(&|n| (20..=100).contains(&n)),
        few: group(&|n| n < 20),
    }
}
