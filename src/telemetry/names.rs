//! Metric names. Tests that scrape `/metrics` use these same constants.

pub const SIP_REQUESTS_RECEIVED_TOTAL: &str = "warp_edge_sip_requests_received_total";
pub const SIP_RESPONSES_SENT_TOTAL: &str = "warp_edge_sip_responses_sent_total";
pub const SIP_PARSE_ERRORS_TOTAL: &str = "warp_edge_sip_parse_errors_total";
pub const SIP_DROPPED_TOTAL: &str = "warp_edge_sip_dropped_total";
pub const SIP_KEEPALIVE_PONGS_TOTAL: &str = "warp_edge_sip_keepalive_pongs_total";
pub const ACL_DECISIONS_TOTAL: &str = "warp_edge_acl_decisions_total";
pub const ACL_CUSTOMER_DECISIONS_TOTAL: &str = "warp_edge_acl_customer_decisions_total";
pub const ACL_RELOADS_TOTAL: &str = "warp_edge_acl_reloads_total";
pub const ACL_RELOAD_DURATION_SECONDS: &str = "warp_edge_acl_reload_duration_seconds";
pub const ACL_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "warp_edge_acl_last_reload_success_timestamp_seconds";
pub const ACL_SOURCE_CONNECTED: &str = "warp_edge_acl_source_connected";
pub const ACL_SOURCE_ENTRIES: &str = "warp_edge_acl_source_entries";
pub const ACL_SOURCE_LAST_KNOWN_GOOD: &str = "warp_edge_acl_source_last_known_good";
pub const ACL_LAST_KNOWN_GOOD_WRITES_TOTAL: &str = "warp_edge_acl_last_known_good_writes_total";
pub const ACL_ENTRIES: &str = "warp_edge_acl_entries";
pub const ACL_DEDICATED_IPS: &str = "warp_edge_acl_dedicated_ips";
pub const ACL_CUSTOMERS: &str = "warp_edge_acl_customers";
pub const TCP_CONNECTIONS_OPEN: &str = "warp_edge_tcp_connections_open";
pub const TCP_CONNECTIONS_TOTAL: &str = "warp_edge_tcp_connections_total";
pub const TCP_CONNECTIONS_CLOSED_MALFORMED_TOTAL: &str =
    "warp_edge_tcp_connections_closed_malformed_total";
// === forwarding (issue 4) ===
pub const CALLS_TOTAL: &str = "warp_edge_calls_total";
pub const GATEWAY_ATTEMPTS_TOTAL: &str = "warp_edge_gateway_attempts_total";
pub const GATEWAY_FAILOVERS_TOTAL: &str = "warp_edge_gateway_failovers_total";
pub const GATEWAY_RESPONSES_TOTAL: &str = "warp_edge_gateway_responses_total";
pub const GATEWAY_UP: &str = "warp_edge_gateway_up";
pub const GATEWAY_PROBES_TOTAL: &str = "warp_edge_gateway_probes_total";
pub const GATEWAY_FIRST_RESPONSE_SECONDS: &str = "warp_edge_gateway_first_response_seconds";
pub const GATEWAY_FINAL_RESPONSE_SECONDS: &str = "warp_edge_gateway_final_response_seconds";
pub const TRANSACTIONS_LIVE: &str = "warp_edge_transactions_live";
pub const DIALOG_REQUESTS_TOTAL: &str = "warp_edge_dialog_requests_total";
pub const RETRANSMISSIONS_TOTAL: &str = "warp_edge_retransmissions_total";
pub const EGRESS_CALLS_TOTAL: &str = "warp_edge_egress_calls_total";
