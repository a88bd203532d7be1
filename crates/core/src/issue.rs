//! Validation issues: what is wrong with which event, where.

use serde::Serialize;

/// One thing wrong with one event of a request.
///
/// `index` is the event's position in the request (0 for a single-object body), `path` the
/// dotted JSON path inside the event (`payload.before.prompt_hash`; empty for the event itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub index: usize,
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(index: usize, path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            index,
            path: path.into(),
            message: message.into(),
        }
    }
}
