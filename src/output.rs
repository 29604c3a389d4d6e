//! What a command hands back to `main`: one JSON document for `--json`, a text for people, and
//! whether its check passed (a failed check is exit 1 with the result still printed).
//! Pure data; printing happens in `main.rs` only.

use serde::Serialize;

#[derive(Debug)]
pub struct Outcome {
    /// The `--json` document of the contract.
    pub json: serde_json::Value,
    /// The human rendering (stdout without `--json`). May be empty.
    pub text: String,
    /// False when the job ran but its check failed (verify mismatch, size exceeded...): exit 1.
    pub ok: bool,
}

impl Outcome {
    /// A successful outcome from any serializable report and its human text.
    pub fn new(report: &impl Serialize, text: impl Into<String>) -> Self {
        Outcome {
            json: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
            text: text.into(),
            ok: true,
        }
    }

    /// For commands with no result document (serve, demo, completions, man).
    pub fn text(text: impl Into<String>) -> Self {
        Outcome {
            json: serde_json::Value::Null,
            text: text.into(),
            ok: true,
        }
    }

    pub fn failed_check(mut self) -> Self {
        self.ok = false;
        self
    }
}
