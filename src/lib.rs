//! backup-cloud: encrypted backups of large databases, taken on an EC2
//! instance that exists only for as long as the backup takes.
//!
//! One binary holds both halves: the controller (`run`), which launches and
//! watches the instance, and the agent (`agent`), which runs on it and
//! streams dump → encrypt → upload.

pub mod agent;
pub mod aws;
pub mod cli;
pub mod client_limits;
pub mod compression;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod exit;
pub mod facts;
pub mod layout;
pub mod lifecycle;
pub mod mysql_batch;
pub mod notify;
pub mod openpgp;
pub mod output;
pub mod pg_archive;
pub mod process;
pub mod restore;
pub mod retention;
pub mod s3;
pub mod schema;
pub mod secret;
pub mod status_store;
pub mod userdata;
