//! Every integration test of backup-cloud, in one binary.
//!
//! Each module was once a test binary of its own; together they link the
//! AWS SDK once instead of thirteen times. A module's tests are selected
//! by its path, e.g. `cargo test --test it e2e_postgres::`.
//!
//! All modules share one process and run on libtest's threads side by
//! side, so a test may not rely on being alone: names come from
//! [`common::unique`], each test starts its own fault proxy, and the few
//! checks that look at server-wide state (the drills' scratch databases)
//! hold [`common::DRILLS`] for as long as they look.

mod common;

mod aws_rules;
mod bad_input;
mod boot;
mod budgets;
mod client_match;
mod data_cases;
mod e2e_mysql;
mod e2e_postgres;
mod e2e_postgres_directory;
mod faults;
mod interrupts;
mod lifecycle;
mod operators;
mod pg_archive;
mod policies;
mod public_keys;
mod restore;
mod restore_formats;
mod retention;
mod secrets;
mod snapshots;
