//! Wardkey's domain: the types of the directory and the access model, and the rules over
//! them (lifecycle state machine, validation, role-template matching, separation of duties).
//!
//! This crate does no I/O and reads no clock: callers pass `now` in. Everything here is
//! deterministic and tested with plain unit and property tests.

pub mod access;
pub mod actor;
pub mod authn;
pub mod clock;
pub mod directory;
pub mod error;
pub mod ids;
pub mod policy;
pub mod sod;
pub mod template;
pub mod validate;

pub use access::*;
pub use actor::*;
pub use authn::*;
pub use clock::{Clock, ManualClock, SystemClock};
pub use directory::*;
pub use error::{DomainError, FieldError};
pub use ids::*;
pub use policy::*;
pub use sod::*;
pub use template::*;

/// Wall-clock time as Wardkey sees it: always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
