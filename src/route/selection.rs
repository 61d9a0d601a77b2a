//! The order of attempts for a call, failover triggers, and the best final response.

use std::hash::{Hash, Hasher};

/// What selection needs to know of a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayChoice {
    /// Lower is tried first (dispatcher's priority, inverted so that 0 is the primary).
    pub priority: u32,
    /// Share of calls within its priority level; 0 means "only when the others are down".
    pub weight: u32,
    pub up: bool,
}

/// The order in which a call tries `gateways` (indices into the slice): priority levels in
/// ascending order; within a level, a weighted order drawn from `key` (the Call-ID), so
/// retransmissions and replicas agree; gateways that are down are skipped; at most
/// `max_attempts`.
pub fn attempt_order(gateways: &[GatewayChoice], key: &[u8], max_attempts: usize) -> Vec<usize> {
    let mut levels: Vec<u32> = gateways
        .iter()
        .filter(|g| g.up)
        .map(|g| g.priority)
        .collect();
    levels.sort_unstable();
    levels.dedup();
    let mut order = Vec::with_capacity(gateways.len().min(max_attempts));
    let mut seed = fnv(key);
    for level in levels {
        let mut pool: Vec<usize> = (0..gateways.len())
            .filter(|&i| gateways[i].up && gateways[i].priority == level)
            .collect();
        // Weighted draw without replacement; weight-0 gateways go last, in configured order.
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|&i| u64::from(gateways[i].weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                seed = xorshift(seed);
                let mut ticket = seed % total;
                pool.iter()
                    .position(|&i| {
                        let w = u64::from(gateways[i].weight);
                        if ticket < w {
                            true
                        } else {
                            ticket -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            order.push(pool.remove(pick));
            if order.len() == max_attempts {
                return order;
            }
        }
    }
    order
}

fn fnv(key: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish() | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Whether a final response from a gateway sends the call to the next one: 408, 500, 502,
/// 503, 504 and the configured extra codes; never a 2xx, a 6xx or any other 4xx.
pub fn should_fail_over(code: u16, extra: &[u16]) -> bool {
    match code {
        408 | 500 | 502 | 503 | 504 => true,
        // Never after an answer, on a global failure, or on a 4xx the customer must see.
        100..=299 | 400..=499 | 600..=699 => false,
        _ => extra.contains(&code),
    }
}

/// The response to relay when every branch has failed (RFC 3261 16.7 step 6): a 6xx if there
/// is one; else the lowest class; within 4xx, those that help a resubmission (401, 407, 415,
/// 420, 484) first. Returns an index into `codes`, or `None` when there is none (the proxy
/// then answers 408 itself).
pub fn best_response(codes: &[u16]) -> Option<usize> {
    let rank = |code: u16| -> (u16, u16) {
        let class = code / 100;
        let class_rank = if class == 6 { 0 } else { class };
        let preferred = u16::from(!matches!(code, 401 | 407 | 415 | 420 | 484));
        (class_rank, preferred)
    };
    (0..codes.len()).min_by_key(|&i| rank(codes[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(priority: u32, weight: u32, up: bool) -> GatewayChoice {
        GatewayChoice {
            priority,
            weight,
            up,
        }
    }

    #[test]
    fn priorities_first_then_weights() {
        let gws = [
            gw(1, 10, true),
            gw(0, 10, true),
            gw(0, 10, true),
            gw(2, 0, true),
        ];
        for key in [&b"a"[..], b"b", b"call-3@x", b""] {
            let order = attempt_order(&gws, key, 10);
            assert_eq!(order.len(), 4);
            assert!(
                order[..2].contains(&1) && order[..2].contains(&2),
                "{order:?}"
            );
            assert_eq!(&order[2..], &[0, 3]);
        }
    }

    #[test]
    fn deterministic_per_key_and_weighted() {
        let gws = [gw(0, 90, true), gw(0, 10, true)];
        assert_eq!(attempt_order(&gws, b"k1", 2), attempt_order(&gws, b"k1", 2));
        let firsts = (0..1000)
            .filter(|i| attempt_order(&gws, format!("call-{i}").as_bytes(), 1)[0] == 0)
            .count();
        assert!(
            (800..=970).contains(&firsts),
            "90/10 weights gave {firsts}/1000"
        );
    }

    #[test]
    fn down_gateways_skipped_and_attempts_capped() {
        let gws = [
            gw(0, 1, false),
            gw(0, 1, true),
            gw(1, 1, true),
            gw(2, 1, true),
        ];
        let order = attempt_order(&gws, b"x", 2);
        assert_eq!(order, vec![1, 2]);
        assert!(attempt_order(&[gw(0, 1, false)], b"x", 3).is_empty());
    }

    #[test]
    fn failover_triggers() {
        for code in [408, 500, 502, 503, 504] {
            assert!(should_fail_over(code, &[]), "{code}");
        }
        for code in [200, 404, 486, 487, 600, 603, 501] {
            assert!(!should_fail_over(code, &[]), "{code}");
        }
        assert!(should_fail_over(501, &[501]));
        assert!(should_fail_over(580, &[580]));
        assert!(
            !should_fail_over(486, &[486]),
            "4xx other than 408 never fails over"
        );
        assert!(!should_fail_over(603, &[603]), "6xx never fails over");
    }

    #[test]
    fn best_response_rules() {
        assert_eq!(best_response(&[]), None);
        assert_eq!(best_response(&[503, 486, 603]), Some(2), "6xx wins");
        assert_eq!(best_response(&[503, 486, 500]), Some(1), "lowest class");
        assert_eq!(
            best_response(&[404, 407, 486]),
            Some(1),
            "407 helps a resubmission"
        );
        assert_eq!(best_response(&[503, 502]), Some(0), "first of a class");
    }
}
