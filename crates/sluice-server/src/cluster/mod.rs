//! Cluster mode (issue 14): several `sluice serve` nodes on one PostgreSQL database.
//!
//! * `ownership`: who runs which piece of work (subscriptions, connectors) — leases with
//!   epochs, rendezvous placement over the live nodes, routing of a request to its owner.
//! * `work`: the [`ownership::WorkHooks`] over the catalog (what gaining or losing a key does).

pub mod ownership;
pub mod work;
