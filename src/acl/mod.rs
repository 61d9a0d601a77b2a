//! The IP ACL: rules from every source, compiled into an immutable snapshot.
pub mod rules;
