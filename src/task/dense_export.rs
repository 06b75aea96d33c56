//! What the exports of the dense tasks share: the JSON's timm encoder (built without a
//! classifier), class names and input; each task adds its decoder and how to read its outputs.

use crate::config::Config;
use crate::model::TimmModel;

/// The export JSON of a `task` model whose encoder is `timm`, trained on `classes` by
/// `config`, with the task's own `fields` (decoder, prefix, output) added.
pub fn args(
    task: &str,
    config: &Config,
    classes: &[String],
    timm: TimmModel,
    fields: serde_json::Value,
) -> serde_json::Value {
    let mut model_args = timm.args;
    model_args.insert("num_classes".into(), 0.into());
    let normalize = &config.augment.normalize;
    let mut args = serde_json::json!({
        "task": task,
        "architecture": timm.architecture,
        "timm_name": timm.name,
        "model_args": model_args,
        "label_names": classes,
        "input": {
            "size": [config.data.channels, config.data.image_size, config.data.image_size],
            "resize": "the whole image to size × size",
            "mean": normalize.enabled.then_some(&normalize.mean),
            "std": normalize.enabled.then_some(&normalize.std),
        },
    });
    if let (Some(args), serde_json::Value::Object(fields)) = (args.as_object_mut(), fields) {
        args.extend(fields);
    }
    args
}
