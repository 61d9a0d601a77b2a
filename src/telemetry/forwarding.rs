//! Forwarding metrics: calls by customer, gateway attempts, failovers, codes and latency,
//! live transactions, in-dialog requests, retransmissions and egress use. Handles are
//! registered when the edge starts (gateways, egress addresses) or on a customer's first
//! call (capped like the ACL's customer labels), never per packet.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Recorder, SharedString, Unit};

use super::names::*;
use super::{Metrics, MAX_CUSTOMER_LABELS, META};

/// Histogram buckets for INVITE-to-response latency: 1 ms to 30 s.
pub(super) const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Attempted,
    Answered,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retransmission {
    /// The edge resent a request (Timer A/E) or a final response (Timer G).
    Sent,
    /// A retransmission from a peer answered from state (or an ACK absorbed).
    Absorbed,
    /// A 2xx retransmission from a vendor forwarded to the customer (RFC 6026).
    Forwarded,
}

/// One gateway's handles.
pub struct GatewayMetrics {
    pub attempts: Counter,
    pub failovers: Counter,
    pub up: Gauge,
    pub probes_ok: Counter,
    pub probes_failed: Counter,
    pub first_response: Histogram,
    pub final_response: Histogram,
    /// Final codes 100..699, registered on first use.
    codes: Vec<OnceLock<Counter>>,
    name: String,
    recorder: Arc<Metrics>,
}

impl GatewayMetrics {
    pub fn response(&self, code: u16) {
        let Some(slot) = self.codes.get(usize::from(code).wrapping_sub(100)) else {
            return;
        };
        slot.get_or_init(|| {
            self.recorder.recorder().register_counter(
                &Key::from_parts(
                    GATEWAY_RESPONSES_TOTAL,
                    vec![
                        Label::new("gateway", self.name.clone()),
                        Label::new("code", code.to_string()),
                    ],
                ),
                &META,
            )
        })
        .increment(1);
    }
}

/// Every forwarding handle of one edge.
pub struct ForwardMetrics {
    pub gateways: Vec<GatewayMetrics>,
    pub egress: Vec<Counter>,
    pub transactions_live: Gauge,
    /// In-dialog requests by the side they came from: `[customer, vendor]`.
    pub dialog_requests: [Counter; 2],
    retransmissions: [Counter; 3],
    calls: RwLock<HashMap<String, [Counter; 3]>>,
    calls_other: [Counter; 3],
    metrics: Arc<Metrics>,
}

fn call_counters(metrics: &Metrics, customer: &str) -> [Counter; 3] {
    ["attempted", "answered", "failed"].map(|outcome| {
        metrics.recorder().register_counter(
            &Key::from_parts(
                CALLS_TOTAL,
                vec![
                    Label::new("customer", customer.to_owned()),
                    Label::new("outcome", outcome),
                ],
            ),
            &META,
        )
    })
}

impl ForwardMetrics {
    /// Registers the handles for these gateways and egress addresses.
    pub fn new(metrics: &Arc<Metrics>, gateways: &[&str], egress: &[String]) -> ForwardMetrics {
        describe(metrics);
        let recorder = metrics.recorder();
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &META)
        };
        let gateways = gateways
            .iter()
            .map(|&name| {
                let label = || vec![Label::new("gateway", name.to_owned())];
                let probe = |outcome: &'static str| {
                    counter(
                        GATEWAY_PROBES_TOTAL,
                        vec![
                            Label::new("gateway", name.to_owned()),
                            Label::new("outcome", outcome),
                        ],
                    )
                };
                let up = recorder.register_gauge(&Key::from_parts(GATEWAY_UP, label()), &META);
                up.set(1.0);
                GatewayMetrics {
                    attempts: counter(GATEWAY_ATTEMPTS_TOTAL, label()),
                    failovers: counter(GATEWAY_FAILOVERS_TOTAL, label()),
                    up,
                    probes_ok: probe("up"),
                    probes_failed: probe("down"),
                    first_response: recorder.register_histogram(
                        &Key::from_parts(GATEWAY_FIRST_RESPONSE_SECONDS, label()),
                        &META,
                    ),
                    final_response: recorder.register_histogram(
                        &Key::from_parts(GATEWAY_FINAL_RESPONSE_SECONDS, label()),
                        &META,
                    ),
                    codes: (100..700).map(|_| OnceLock::new()).collect(),
                    name: name.to_owned(),
                    recorder: metrics.clone(),
                }
            })
            .collect();
        let egress = egress
            .iter()
            .map(|e| counter(EGRESS_CALLS_TOTAL, vec![Label::new("egress", e.clone())]))
            .collect();
        let side =
            |s: &'static str| counter(DIALOG_REQUESTS_TOTAL, vec![Label::new("direction", s)]);
        let retransmission =
            |k: &'static str| counter(RETRANSMISSIONS_TOTAL, vec![Label::new("kind", k)]);
        ForwardMetrics {
            gateways,
            egress,
            transactions_live: recorder.register_gauge(&Key::from_name(TRANSACTIONS_LIVE), &META),
            dialog_requests: [side("customer"), side("vendor")],
            retransmissions: [
                retransmission("sent"),
                retransmission("absorbed"),
                retransmission("forwarded"),
            ],
            calls: RwLock::new(HashMap::new()),
            calls_other: call_counters(metrics, "other"),
            metrics: metrics.clone(),
        }
    }

    pub fn retransmission(&self, kind: Retransmission) {
        self.retransmissions[kind as usize].increment(1);
    }

    /// Counts a call outcome for a customer (first [`MAX_CUSTOMER_LABELS`] customers by first
    /// call get their own label; the rest share `other`).
    pub fn call(&self, customer: &str, outcome: CallOutcome) {
        let index = outcome as usize;
        {
            let calls = self.calls.read().unwrap_or_else(|e| e.into_inner());
            if let Some(counters) = calls.get(customer) {
                counters[index].increment(1);
                return;
            }
        }
        let mut calls = self.calls.write().unwrap_or_else(|e| e.into_inner());
        if calls.len() >= MAX_CUSTOMER_LABELS {
            self.calls_other[index].increment(1);
            return;
        }
        calls
            .entry(customer.to_owned())
            .or_insert_with(|| call_counters(&self.metrics, customer))[index]
            .increment(1);
    }
}

fn describe(metrics: &Metrics) {
    let recorder = metrics.recorder();
    for (name, text) in [
        (
            CALLS_TOTAL,
            "Calls (initial INVITEs) by customer and outcome.",
        ),
        (
            GATEWAY_ATTEMPTS_TOTAL,
            "INVITEs sent to a gateway (one per attempt).",
        ),
        (
            GATEWAY_FAILOVERS_TOTAL,
            "Attempts on a gateway that failed over to the next one.",
        ),
        (
            GATEWAY_RESPONSES_TOTAL,
            "Final responses from a gateway, by code (408 for timeouts and connect failures).",
        ),
        (GATEWAY_PROBES_TOTAL, "OPTIONS probe results by gateway."),
        (
            DIALOG_REQUESTS_TOTAL,
            "In-dialog requests routed by Record-Route token, by the side they came from.",
        ),
        (
            RETRANSMISSIONS_TOTAL,
            "Retransmissions sent, absorbed, or (2xx) forwarded.",
        ),
        (EGRESS_CALLS_TOTAL, "Calls sent from each egress address."),
    ] {
        recorder.describe_counter(
            KeyName::from_const_str(name),
            Some(Unit::Count),
            SharedString::const_str(text),
        );
    }
    recorder.describe_gauge(
        KeyName::from_const_str(GATEWAY_UP),
        None,
        SharedString::const_str("Gateway health: 1 up, 0 down."),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(TRANSACTIONS_LIVE),
        Some(Unit::Count),
        SharedString::const_str("Proxy transactions in memory."),
    );
    for (name, text) in [
        (
            GATEWAY_FIRST_RESPONSE_SECONDS,
            "INVITE sent to first response from the gateway.",
        ),
        (
            GATEWAY_FINAL_RESPONSE_SECONDS,
            "INVITE sent to final response from the gateway.",
        ),
    ] {
        recorder.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            SharedString::const_str(text),
        );
    }
}
