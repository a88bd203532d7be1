//! Tests of trailkeep-control: the approval state machine, impersonation sessions and alert
//! rules, each driven through the events a store would fold.

#[path = "control/support.rs"]
mod support;

#[path = "control/approvals.rs"]
mod approvals;
#[path = "control/rules.rs"]
mod rules;
#[path = "control/sessions.rs"]
mod sessions;
