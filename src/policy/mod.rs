//! Backup policies: their definitions and run records in the backup storage,
//! and their status. The schedule itself runs in the engine, which starts
//! each due slot's backup and retention's deletes through their own jobs.

mod status;
mod store;

pub use status::{PolicyStatus, holdings, status};
pub use store::{POLICIES_DIR, PolicyStore, RunRecord, RunState, StoredPolicy};
