//! The seed's flags, defined once. `v1p train`'s options (clap), the page's settings form
//! (`flagTable` in `web/flags.rs`) and the per-flag range checks of
//! [`TrainingConfig::validate`] all read [`FLAGS`], so a help text or a limit cannot drift
//! between them. (The one-line summary of a run on its plots, `TrainingConfig::summary`,
//! is written for reading, not per flag: one function, used by the plots and the runs panel.)
//!
//! A flag reaches its field in [`TrainingConfig`] through its serde path (`["model",
//! "conv1"]`): the config goes to a `serde_json::Value`, the leaf is read or replaced, and
//! serde turns it back (which also checks a choice's spelling). `tests/flags.rs` checks that
//! every leaf of the config is a flag here, exactly once, or is exempted by name.

use serde::Serialize;
use serde_json::Value;

use super::ConfigError;
use crate::model::ModelFamily;
use crate::training::TrainingConfig;

/// Where the page shows a flag (a fieldset each; the names are the page's legends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Group {
    #[serde(rename = "training")]
    Training,
    #[serde(rename = "CNN params")]
    Cnn,
    #[serde(rename = "hidden layer")]
    Hidden,
    #[serde(rename = "output")]
    Output,
    #[serde(rename = "Gabor bank")]
    Gabor,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Cnn => "CNN params",
            Self::Hidden => "hidden layer",
            Self::Output => "output",
            Self::Gabor => "Gabor bank",
        }
    }
}

/// Which ends of a float flag's range are allowed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounds {
    /// min ≤ x ≤ max
    Closed,
    /// min < x ≤ max (a rate that must be positive)
    AboveMin,
    /// min < x < max (a fraction that must leave something on both sides)
    Open,
}

/// What text a flag takes, and its allowed range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A whole number, min ≤ n ≤ max.
    Int {
        min: u64,
        max: u64,
    },
    Float {
        min: f64,
        max: f64,
        bounds: Bounds,
    },
    /// One of these words (serde's lowercase names of the enum).
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
}

/// One of the seed's flags (or one added here), and where it lives in [`TrainingConfig`].
#[derive(Debug)]
pub struct Flag {
    /// The seed's flag, as `--name` on the command line and the key in the page's URL.
    pub name: &'static str,
    /// Plain words for a student, the form's main label.
    pub label: &'static str,
    pub group: Group,
    /// One sentence: `v1p train --help` and the form's help line.
    pub help: &'static str,
    pub kind: Kind,
    /// Shown up front to a first-time visitor; the rest sit under "All settings".
    pub everyday: bool,
    /// The models it means something for (the page hides it for the others).
    pub families: &'static [ModelFamily],
    /// Its field in `TrainingConfig`, as serde names it.
    pub path: &'static [&'static str],
    /// How a run's one-line summary (the plots' caption, the runs panel) shows it, if at all.
    pub shown: Option<Shown>,
}

/// The words a flag has in a run's one-line summary, and when it is left out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shown {
    /// `words value` (the value alone when `words` is empty).
    Always(&'static str),
    /// Left out at this value (a patience of 0, one network in an "ensemble"; `false` is 0,
    /// and a switch that is on shows as `words` alone).
    Unless(&'static str, f64),
    /// Only with a second convolution layer (`numconvlayer` 2 or 3; a third reuses its flags).
    SecondConv(&'static str),
}

const TRAINED: &[ModelFamily] = &[ModelFamily::Cnn, ModelFamily::Cnnplus, ModelFamily::Ln];
const CNN: &[ModelFamily] = &[ModelFamily::Cnn, ModelFamily::Cnnplus];
const GABOR: &[ModelFamily] = &[ModelFamily::Gabor];
/// The split's flags: the Gabor ridge has no training loop, but is scored on the same split.
const EVERY: &[ModelFamily] = &ModelFamily::ALL;

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const fn float(min: f64, max: f64, bounds: Bounds) -> Kind {
    Kind::Float { min, max, bounds }
}

/// A flag that nobody sees up front; the table's entries below say `everyday` where it is.
const fn flag(
    name: &'static str,
    label: &'static str,
    group: Group,
    help: &'static str,
    kind: Kind,
    families: &'static [ModelFamily],
    path: &'static [&'static str],
) -> Flag {
    Flag {
        name,
        label,
        group,
        help,
        kind,
        everyday: false,
        families,
        path,
        shown: None,
    }
}

const fn shown(shown: Shown, flag: Flag) -> Flag {
    Flag {
        shown: Some(shown),
        ..flag
    }
}

const fn everyday(flag: Flag) -> Flag {
    Flag {
        everyday: true,
        ..flag
    }
}

/// Every flag, in the order `v1p train --help` lists them and the page's groups show them.
/// The ranges are today's limits of validation (every preset inside them); checks between
/// flags or against the data (fractions summing below 1, batch ≤ training images, the
/// shrinking feature map, poisson needs a non-relu output) stay in `validate`/`architecture`.
pub static FLAGS: &[Flag] = &[
    shown(
        Shown::Always("lr"),
        everyday(flag(
            "learning_rate",
            "learning rate",
            Group::Training,
            "Initial learning rate.",
            float(0.0, 10.0, Bounds::AboveMin),
            TRAINED,
            &["learning_rate"],
        )),
    ),
    shown(
        Shown::Always("steps"),
        everyday(flag(
            "max_steps",
            "training steps",
            Group::Training,
            "Number of steps to run trainer.",
            int(1, 10_000_000),
            TRAINED,
            &["max_steps"],
        )),
    ),
    shown(
        Shown::Always("batch"),
        flag(
            "batch_size",
            "images per step",
            Group::Training,
            "Batch size.",
            int(1, 1_000_000),
            TRAINED,
            &["batch_size"],
        ),
    ),
    shown(
        Shown::Always("train"),
        flag(
            "trainingset_frac",
            "share of images for training",
            Group::Training,
            "Training set size (fraction of images).",
            float(0.0, 1.0, Bounds::Open),
            EVERY,
            &["trainingset_frac"],
        ),
    ),
    shown(
        Shown::Always("early stop"),
        flag(
            "earlystop_frac",
            "share of images for early stopping",
            Group::Training,
            "Early stop set size (fraction of images).",
            float(0.0, 1.0, Bounds::Open),
            EVERY,
            &["earlystop_frac"],
        ),
    ),
    shown(
        Shown::Always(""),
        flag(
            "optimizer",
            "optimizer",
            Group::Training,
            "How the weights are updated: sgd (plain gradient descent, the seed) or adam (faster).",
            Kind::Choice(&["sgd", "adam"]),
            TRAINED,
            &["optimizer"],
        ),
    ),
    shown(
        Shown::Always("eval every"),
        flag(
            "eval_every",
            "steps between checks",
            Group::Training,
            "Steps between evaluations (the seed: 200).",
            int(1, 10_000_000),
            TRAINED,
            &["eval_every"],
        ),
    ),
    shown(
        Shown::Always("seed"),
        everyday(flag(
            "seed",
            "random seed",
            Group::Training,
            "Random seed of the split, the initial weights, the batches and dropout.",
            // The largest whole number a JavaScript number holds exactly: the page and its
            // exports carry the seed as one.
            int(0, (1 << 53) - 1),
            EVERY,
            &["seed"],
        )),
    ),
    shown(
        Shown::Always("loss"),
        flag(
            "loss",
            "error measure",
            Group::Training,
            "Training loss: mse (squared error, the seed) or poisson (made for spike counts).",
            Kind::Choice(&["mse", "poisson"]),
            TRAINED,
            &["loss"],
        ),
    ),
    shown(
        Shown::Unless("patience", 0.0),
        flag(
            "patience",
            "patience",
            Group::Training,
            "Stop after this many evaluations without a lower early-stop loss (0 = never).",
            int(0, 1_000_000),
            TRAINED,
            &["patience"],
        ),
    ),
    shown(
        Shown::Unless("weight decay", 0.0),
        flag(
            "weight_decay",
            "weight penalty",
            Group::Training,
            "L2 penalty on large weights, added to every gradient (0 = none).",
            float(0.0, 1.0, Bounds::Closed),
            TRAINED,
            &["weight_decay"],
        ),
    ),
    shown(
        Shown::Always("conv1"),
        everyday(flag(
            "conv1",
            "filters in layer 1",
            Group::Cnn,
            "Number of filters in conv 1.",
            int(1, 512),
            CNN,
            &["model", "conv1"],
        )),
    ),
    shown(
        Shown::SecondConv("conv2"),
        flag(
            "conv2",
            "filters in layer 2",
            Group::Cnn,
            "Number of filters in conv 2 (and conv 3).",
            int(1, 512),
            CNN,
            &["model", "conv2"],
        ),
    ),
    shown(
        Shown::Always("size1"),
        flag(
            "conv1size",
            "filter size in layer 1",
            Group::Cnn,
            "Size (linear) of convolution kernel layer 1.",
            int(1, 256),
            CNN,
            &["model", "conv1size"],
        ),
    ),
    shown(
        Shown::Always("pool1"),
        flag(
            "nk1",
            "pooling window in layer 1",
            Group::Cnn,
            "Size of max pool kernel layer 1.",
            int(1, 256),
            CNN,
            &["model", "nk1"],
        ),
    ),
    shown(
        Shown::Always("stride1"),
        flag(
            "nstride1",
            "pooling step in layer 1",
            Group::Cnn,
            "Size of max pool stride layer 1.",
            int(1, 256),
            CNN,
            &["model", "nstride1"],
        ),
    ),
    shown(
        Shown::SecondConv("size2"),
        flag(
            "conv2size",
            "filter size in layer 2",
            Group::Cnn,
            "Size (linear) of convolution kernel layer 2 (and 3).",
            int(1, 256),
            CNN,
            &["model", "conv2size"],
        ),
    ),
    shown(
        Shown::SecondConv("pool2"),
        flag(
            "nk2",
            "pooling window in layer 2",
            Group::Cnn,
            "Size of max pool kernel layer 2 (and 3).",
            int(1, 256),
            CNN,
            &["model", "nk2"],
        ),
    ),
    shown(
        Shown::SecondConv("stride2"),
        flag(
            "nstride2",
            "pooling step in layer 2",
            Group::Cnn,
            "Size of max pool stride layer 2 (and 3).",
            int(1, 256),
            CNN,
            &["model", "nstride2"],
        ),
    ),
    shown(
        Shown::Always("conv layers"),
        flag(
            "numconvlayer",
            "number of filter layers",
            Group::Cnn,
            "Number of convolutional layers (1-3; the third reuses conv 2's settings).",
            int(1, 3),
            CNN,
            &["model", "numconvlayer"],
        ),
    ),
    shown(
        Shown::Always("hidden"),
        everyday(flag(
            "hidden1",
            "units in the hidden layer",
            Group::Hidden,
            "Number of units in hidden layer 1.",
            int(1, 20_000),
            CNN,
            &["model", "hidden1"],
        )),
    ),
    shown(
        Shown::Always("keep"),
        flag(
            "dropout",
            "dropout keep rate",
            Group::Hidden,
            "Dropout keep rate of the hidden units during training (1 = no dropout).",
            float(0.0, 1.0, Bounds::AboveMin),
            CNN,
            &["model", "dropout"],
        ),
    ),
    shown(
        Shown::Always("output"),
        flag(
            "output",
            "output function",
            Group::Output,
            "How a neuron's drive becomes a rate: relu (the seed), softplus or exp.",
            Kind::Choice(&["relu", "softplus", "exp"]),
            TRAINED,
            &["model", "output"],
        ),
    ),
    shown(
        Shown::Unless("ensemble", 1.0),
        flag(
            "ensemble",
            "networks averaged",
            Group::Output,
            "Networks trained side by side from different initial weights, predictions averaged.",
            int(1, 16),
            TRAINED,
            &["model", "ensemble"],
        ),
    ),
    shown(
        Shown::Unless("standardised pixels", 0.0),
        flag(
            "standardise",
            "rescale pixels",
            Group::Output,
            "Rescale the pixels to mean 0, sd 1 over the training images first (the seed uses raw 0…255).",
            Kind::Bool,
            TRAINED,
            &["model", "standardise"],
        ),
    ),
    shown(
        Shown::Always("orientations"),
        everyday(flag(
            "gabor_orientations",
            "orientations",
            Group::Gabor,
            "Orientations of the Gabor filters, evenly spaced over 180°.",
            int(1, 32),
            GABOR,
            &["model", "gabor", "orientations"],
        )),
    ),
    shown(
        Shown::Always("frequencies"),
        flag(
            "gabor_frequencies",
            "filter sizes",
            Group::Gabor,
            "Spatial frequencies of the Gabor filters, an octave apart.",
            int(1, 6),
            GABOR,
            &["model", "gabor", "frequencies"],
        ),
    ),
    shown(
        Shown::Always("shortest wavelength (px)"),
        flag(
            "gabor_min_wavelength",
            "finest wavelength (pixels)",
            Group::Gabor,
            "Wavelength of the finest Gabor filter in pixels (2 is the finest a pixel grid can show).",
            float(2.0, 64.0, Bounds::Closed),
            GABOR,
            &["model", "gabor", "min_wavelength"],
        ),
    ),
    shown(
        Shown::Always("positions per side"),
        everyday(flag(
            "gabor_positions",
            "positions per side",
            Group::Gabor,
            "Gabor filter centres per side of the image.",
            int(1, 33),
            GABOR,
            &["model", "gabor", "positions"],
        )),
    ),
];

/// The flag called `name`.
pub fn find(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The refusal for a name that is not in the table.
pub fn unknown(name: &str) -> ConfigError {
    ConfigError::new(
        name,
        "is not a setting of this program (see v1p train --help)",
    )
}

impl Flag {
    pub fn applies_to(&self, family: ModelFamily) -> bool {
        self.families.contains(&family)
    }

    /// Reads `text` as this flag's value, range checked: the JSON value its field takes.
    pub fn parse(&self, text: &str) -> Result<Value, ConfigError> {
        let text = text.trim();
        let refuse = |message: String| ConfigError::new(self.name, message);
        match self.kind {
            Kind::Int { .. } => {
                let n = match text.parse::<u64>() {
                    Ok(n) => n,
                    // "1e3" or "2000.0" is a whole number too (the page's fields are free text).
                    Err(_) => match text.parse::<f64>() {
                        Ok(x)
                            if x.is_finite()
                                && x >= 0.0
                                && x.fract() == 0.0
                                && x < 2f64.powi(53) =>
                        {
                            x as u64
                        }
                        Ok(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 => {
                            return Err(refuse(format!("{text} is too large")));
                        }
                        Ok(x) if x.is_finite() => {
                            return Err(refuse(format!("must be a whole number ≥ 0, got {text}")));
                        }
                        _ => return Err(refuse(format!("\"{text}\" is not a number"))),
                    },
                };
                self.check(&Value::from(n))?;
                Ok(Value::from(n))
            }
            Kind::Float { .. } => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    self.check(&Value::from(x))?;
                    Ok(Value::from(x))
                }
                _ => Err(refuse(format!("\"{text}\" is not a number"))),
            },
            Kind::Choice(choices) => {
                if choices.contains(&text) {
                    Ok(Value::from(text))
                } else {
                    Err(refuse(format!(
                        "\"{text}\" is not one of {}",
                        choices.join(", ")
                    )))
                }
            }
            Kind::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(refuse(format!("\"{text}\" is not true or false"))),
            },
        }
    }

    /// Refuses a value outside the flag's range (choices and booleans are checked by serde).
    pub fn check(&self, value: &Value) -> Result<(), ConfigError> {
        let refuse = |message: String| Err(ConfigError::new(self.name, message));
        match self.kind {
            Kind::Int { min, max } => match value.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                Some(n) => refuse(format!("must be between {min} and {max}, got {n}")),
                None => refuse(format!("must be a whole number, got {value}")),
            },
            Kind::Float { min, max, bounds } => {
                // Non-finite floats serialise as null: refused like any other non-number.
                let Some(x) = value.as_f64() else {
                    return refuse("must be a number".into());
                };
                let (ok, range) = match bounds {
                    Bounds::Closed => (x >= min && x <= max, format!("between {min} and {max}")),
                    Bounds::AboveMin => (
                        x > min && x <= max,
                        format!("above {min} and at most {max}"),
                    ),
                    Bounds::Open => (x > min && x < max, format!("above {min} and below {max}")),
                };
                if ok {
                    Ok(())
                } else {
                    refuse(format!("must be {range}, got {x}"))
                }
            }
            Kind::Choice(_) | Kind::Bool => Ok(()),
        }
    }

    /// The value as text a user would type (floats as short as round-trips: `0.0002`).
    fn text(&self, value: &Value) -> String {
        match (self.kind, value) {
            (Kind::Float { .. }, Value::Number(n)) => {
                n.as_f64().map_or_else(String::new, |x| x.to_string())
            }
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        }
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("configs serialise to JSON")
}

fn at<'a>(mut value: &'a Value, path: &[&str]) -> &'a Value {
    for key in path {
        value = &value[*key];
    }
    value
}

fn at_mut<'a>(mut value: &'a mut Value, path: &[&str]) -> &'a mut Value {
    for key in path {
        value = &mut value[*key];
    }
    value
}

/// Every flag's value in `config`, as text, in the table's order.
pub fn flag_values(config: &TrainingConfig) -> Vec<(&'static str, String)> {
    let root = to_value(config);
    FLAGS
        .iter()
        .map(|f| (f.name, f.text(at(&root, f.path))))
        .collect()
}

/// A run's settings on one line (the plots' caption, the runs panel), from the table: the
/// model, then every flag of that model the table gives words for, in the table's order.
pub fn summary(config: &TrainingConfig) -> String {
    let family = config.model.family;
    let root = to_value(config);
    let mut parts = vec![family.name().to_string()];
    for flag in FLAGS.iter().filter(|f| f.applies_to(family)) {
        let value = at(&root, flag.path);
        let number = value.as_f64().or_else(|| value.as_bool().map(f64::from));
        let words = match flag.shown {
            None => continue,
            Some(Shown::Always(words)) => words,
            Some(Shown::Unless(words, off)) if number != Some(off) => words,
            Some(Shown::SecondConv(words)) if config.model.numconvlayer >= 2 => words,
            Some(_) => continue,
        };
        let text = match value {
            Value::Bool(_) => String::new(),
            Value::Number(_) if matches!(flag.kind, Kind::Float { .. }) => {
                short_number(number.unwrap_or(f64::NAN))
            }
            _ => flag.text(value),
        };
        parts.push([words, &text].join(" ").trim().to_string());
    }
    if family == ModelFamily::Gabor {
        parts.push(format!(
            "{} features · ridge per neuron",
            config.model.gabor.n_features()
        ));
    }
    parts.join(" · ")
}

/// Six significant digits: 2/3 reads 0.666667, and a learning rate of 0.00012345 stays whole.
fn short_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
    ((x * scale).round() / scale).to_string()
}

/// Sets one flag from its text; refuses bad text, an out-of-range value or an unknown name.
pub fn set_flag(config: &mut TrainingConfig, name: &str, text: &str) -> Result<(), ConfigError> {
    apply_flags(config, [(name, text)])
}

/// Sets several flags from text (a later one wins); on an error `config` is unchanged.
pub fn apply_flags<'a>(
    config: &mut TrainingConfig,
    values: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ConfigError> {
    let mut root = to_value(config);
    for (name, text) in values {
        let flag = find(name).ok_or_else(|| unknown(name))?;
        *at_mut(&mut root, flag.path) = flag.parse(text)?;
    }
    // Only a misspelt choice could fail here, and `parse` refuses those; kept as an error
    // rather than a panic in case a serde name and the table's choices ever disagree.
    *config = serde_json::from_value(root)
        .map_err(|e| ConfigError::new("flags", format!("do not make a configuration: {e}")))?;
    Ok(())
}

/// Refuses any flag of `config` outside its range, among those that apply to its model
/// (a Gabor run is not refused for a CNN setting it never reads).
pub fn check_ranges(config: &TrainingConfig) -> Result<(), ConfigError> {
    check_part(config, &[], config.model.family)
}

/// [`check_ranges`] for one part of the config: `part` is the value at `at` (e.g. the
/// `ModelConfig` at `["model"]`), checked for the flags below `at` that apply to `family`.
pub fn check_part<T: Serialize>(
    part: &T,
    at_path: &[&str],
    family: ModelFamily,
) -> Result<(), ConfigError> {
    let root = to_value(part);
    FLAGS
        .iter()
        .filter(|f| f.applies_to(family) && f.path.starts_with(at_path))
        .try_for_each(|f| f.check(at(&root, &f.path[at_path.len()..])))
}

/// A flag as the page's form renders it (`flagTable()` in JavaScript).
#[derive(Clone, Debug, Serialize)]
pub struct FlagInfo {
    pub name: &'static str,
    pub label: &'static str,
    pub group: Group,
    pub help: &'static str,
    /// "int", "float", "choice" or "bool".
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<&'static [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Present (true) when `min` itself is not allowed (a rate above 0, a fraction).
    #[serde(rename = "minExclusive", skip_serializing_if = "std::ops::Not::not")]
    pub min_exclusive: bool,
    /// Present (true) when `max` itself is not allowed (a fraction below 1).
    #[serde(rename = "maxExclusive", skip_serializing_if = "std::ops::Not::not")]
    pub max_exclusive: bool,
    pub everyday: bool,
    pub families: Vec<&'static str>,
}

impl Flag {
    pub fn info(&self) -> FlagInfo {
        let (kind, choices, min, max, bounds) = match self.kind {
            // u64 → f64: the seed's maximum (2^64 − 1) shows as 1.8e19, a bound nobody reaches.
            Kind::Int { min, max } => (
                "int",
                None,
                Some(min as f64),
                Some(max as f64),
                Bounds::Closed,
            ),
            Kind::Float { min, max, bounds } => ("float", None, Some(min), Some(max), bounds),
            Kind::Choice(choices) => ("choice", Some(choices), None, None, Bounds::Closed),
            Kind::Bool => ("bool", Some(BOOL_CHOICES), None, None, Bounds::Closed),
        };
        FlagInfo {
            name: self.name,
            label: self.label,
            group: self.group,
            help: self.help,
            kind,
            choices,
            min,
            max,
            min_exclusive: bounds != Bounds::Closed,
            max_exclusive: bounds == Bounds::Open,
            everyday: self.everyday,
            families: self.families.iter().map(|f| f.name()).collect(),
        }
    }
}

const BOOL_CHOICES: &[&str] = &["false", "true"];

/// The whole table for the page.
pub fn table() -> Vec<FlagInfo> {
    FLAGS.iter().map(Flag::info).collect()
}
