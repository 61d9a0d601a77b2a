//! Vendor routing: gateways, routes, the order in which a call tries them, when to fail over,
//! which final response goes back when every gateway failed, and gateway health.
//!
//! Everything here is decided without I/O and without the clock: selection takes a key (the
//! Call-ID hash) so it is deterministic, health takes probe outcomes as they arrive. DNS
//! refresh and probing are driven from [`crate::edge`].

pub mod health;
pub mod selection;
pub mod table;

pub use health::{Health, HealthPolicy, HealthState};
pub use selection::{attempt_order, best_response, should_fail_over, GatewayChoice};
pub use table::{Gateway, GatewaySpec, Route, RouteSpec, RouteTable, Routing};
