//! The network catalog: which networks exist (`model.arch` in YAML) and what each one is. The
//! layers are laid out by [`super::mlp`] and [`super::convnet`]; adding a CIFAR ResNet depth is a
//! variant and a line in [`Arch::family`].

use serde::{Deserialize, Serialize};

/// The network (`model:` in YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Hidden layer widths of the MLP (default `[128]`); not used by convolutional networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
}

/// Every network, by its YAML name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Fully connected ReLU network on the flattened image.
    Mlp,
    /// conv32-pool-conv64-pool-conv128, global average pooling (for 8×8 and 28×28 inputs).
    SmallCnn,
    /// CIFAR ResNets (He et al. 2016): 6n + 2 layers, widths 16/32/64. ResNet-8 (one block per
    /// stage) is for tests and quick checks.
    Resnet8,
    Resnet20,
    Resnet32,
    Resnet44,
    Resnet56,
    Resnet110,
    /// ResNet-18/34 in the official ICM code's CIFAR form.
    Resnet18,
    Resnet34,
}

/// How a network is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Mlp,
    SmallCnn,
    /// CIFAR ResNet with this many layers (6n + 2).
    CifarResnet(usize),
    /// ImageNet-style ResNet in CIFAR form with these BasicBlocks per stage.
    Resnet([usize; 4]),
}

impl Arch {
    /// How the network is built.
    pub fn family(self) -> Family {
        match self {
            Arch::Mlp => Family::Mlp,
            Arch::SmallCnn => Family::SmallCnn,
            Arch::Resnet8 => Family::CifarResnet(8),
            Arch::Resnet20 => Family::CifarResnet(20),
            Arch::Resnet32 => Family::CifarResnet(32),
            Arch::Resnet44 => Family::CifarResnet(44),
            Arch::Resnet56 => Family::CifarResnet(56),
            Arch::Resnet110 => Family::CifarResnet(110),
            Arch::Resnet18 => Family::Resnet([2, 2, 2, 2]),
            Arch::Resnet34 => Family::Resnet([3, 4, 6, 3]),
        }
    }

    /// Whether it is a convolutional network (with batch normalisation).
    pub fn is_conv(self) -> bool {
        self.family() != Family::Mlp
    }
}

impl ModelSpec {
    /// Checks the model and fills the MLP's default widths.
    pub fn check(&mut self) -> Result<(), String> {
        if self.arch == Arch::Mlp {
            let hidden = self.hidden.get_or_insert_with(|| vec![128]);
            if hidden.contains(&0) {
                return Err(format!("hidden layer widths must be ≥ 1, got {hidden:?}"));
            }
        } else if self.hidden.is_some() {
            return Err(
                "`hidden` sets the MLP's widths; convolutional networks have fixed widths".into(),
            );
        }
        Ok(())
    }
}
