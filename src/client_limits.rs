//! Limits the stock MySQL client tools must be given so that whatever the
//! server accepts also passes through them.
//!
//! `mysqldump` and `mysql` default to a `max_allowed_packet` far below what
//! a server may be set to accept (16 MiB and 16 MiB in MariaDB 10.11's
//! clients, against up to 1 GiB on the server): a row the server stored is
//! then cut off mid-dump ("Lost connection to server during query") or
//! refused mid-restore. Each client is given the largest packet the
//! protocol allows, 1 GiB (MariaDB Knowledge Base, "max_allowed_packet"),
//! so the server's own setting is the only limit left.

/// The client option raising the packet limit to the protocol's maximum.
pub const MYSQL_MAX_PACKET: &str = "--max-allowed-packet=1073741824";
