//! The classifier settings both architectures record in their metadata (algorithm.md §8), written
//! once.

use crate::model::Settings;
use serde_json::{json, Value};

/// Append the settings `s` to the architecture object `arch`, after the keys it has.
pub(super) fn push_settings_json(arch: &mut Value, s: &Settings) {
    let fields = json!({
        "classes": s.classes,
        "activation": s.activation.name(),
        "slope": s.activation.slope(),
        "dropout_pct": s.dropout_pct,
        "bias": s.bias,
        "init": s.init.name(),
        "seed": s.seed,
    });
    extend_json(arch, fields);
}

/// Append the keys of the object `more` to the object `arch`, in their order.
pub(super) fn extend_json(arch: &mut Value, more: Value) {
    if let (Some(a), Value::Object(m)) = (arch.as_object_mut(), more) {
        a.extend(m);
    }
}
