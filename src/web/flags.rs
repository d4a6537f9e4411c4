//! The flag table for the page: the settings form is rendered from `flagTable()`, filled
//! from `flagValues(config)` and read back with `configFromFlags(family, values)`, so the
//! page holds no copy of the flags, their help or their limits (`config::flags` does).

use std::collections::BTreeMap;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::to_js;
use crate::config::ConfigError;
use crate::config::flags;
use crate::model::ModelFamily;
use crate::training::TrainingConfig;

/// What the page catches: `{kind: "flag", flag, message}` names the field to mark;
/// `{kind: "input", message}` is a call the page got wrong (not an object, say).
#[derive(Serialize)]
struct Thrown<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<&'a str>,
    message: String,
}

fn throw_flag(error: &ConfigError) -> JsValue {
    to_js(&Thrown {
        kind: "flag",
        flag: Some(&error.flag),
        message: error.message.clone(),
    })
    .unwrap_or_else(|e| e)
}

fn throw_input(message: impl ToString) -> JsValue {
    to_js(&Thrown {
        kind: "input",
        flag: None,
        message: message.to_string(),
    })
    .unwrap_or_else(|e| e)
}

/// Every flag: `[{name, label, group, help, kind: "int"|"float"|"choice"|"bool", choices?,
/// min?, max?, minExclusive?, maxExclusive?, everyday, families: ["cnn", …]}]`, in the
/// order `v1p train --help` lists them.
#[wasm_bindgen(js_name = flagTable)]
pub fn flag_table() -> Result<JsValue, JsValue> {
    to_js(&flags::table())
}

/// A `TrainingConfig` object's flags as the form shows them: `{name: text}`.
#[wasm_bindgen(js_name = flagValues)]
pub fn flag_values(config: JsValue) -> Result<JsValue, JsValue> {
    let config: TrainingConfig = serde_wasm_bindgen::from_value(config).map_err(throw_input)?;
    let values: BTreeMap<&str, String> = flags::flag_values(&config).into_iter().collect();
    to_js(&values)
}

/// The `TrainingConfig` of model `family` ("cnn", "cnnplus", "ln", "gabor") with the form's
/// `values` (`{name: text}`; numbers and booleans are taken too) over that model's preset.
/// Throws `{kind: "flag", flag, message}` for the first bad value ("model" for an unknown
/// family).
#[wasm_bindgen(js_name = configFromFlags)]
pub fn config_from_flags(family: &str, values: JsValue) -> Result<JsValue, JsValue> {
    let family = ModelFamily::ALL
        .into_iter()
        .find(|f| f.name() == family)
        .ok_or_else(|| {
            throw_flag(&ConfigError::new(
                "model",
                format!("\"{family}\" is not one of cnn, cnnplus, ln, gabor"),
            ))
        })?;
    let values: BTreeMap<String, serde_json::Value> =
        serde_wasm_bindgen::from_value(values).map_err(throw_input)?;
    let texts: Vec<(&str, String)> = values
        .iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.as_str(), text)
        })
        .collect();
    let mut config = TrainingConfig::for_family(family);
    flags::apply_flags(&mut config, texts.iter().map(|(n, t)| (*n, t.as_str())))
        .map_err(|e| throw_flag(&e))?;
    to_js(&config)
}

/// The network `config` makes for images of `height` × `width` and `neurons` neurons, for
/// the page's diagram: `{ architecture?, n_params?, gabor_features? }`. Throws
/// `{kind: "flag", flag, message}` when the settings make no network (a feature map that
/// shrinks to nothing, say).
#[wasm_bindgen(js_name = networkShape)]
pub fn network_shape(
    config: JsValue,
    height: usize,
    width: usize,
    neurons: usize,
) -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    struct Shape {
        architecture: Option<crate::model::Architecture>,
        n_params: Option<usize>,
        gabor_features: Option<usize>,
    }
    let config: TrainingConfig = serde_wasm_bindgen::from_value(config).map_err(throw_input)?;
    let model = &config.model;
    let shape = if model.family == ModelFamily::Gabor {
        Shape {
            architecture: None,
            n_params: None,
            gabor_features: Some(model.gabor.n_features()),
        }
    } else {
        let architecture = model
            .architecture([height, width], neurons)
            .map_err(|e| throw_flag(&e))?;
        Shape {
            n_params: Some(architecture.n_params()),
            architecture: Some(architecture),
            gabor_features: None,
        }
    };
    to_js(&shape)
}
