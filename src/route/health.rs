//! Gateway health: OPTIONS probe outcomes (and transport failures seen on real calls) move a
//! gateway between up and down after configurable runs of the same result, so one lost probe
//! does not flap it. Kamailio's dispatcher users report TCP failures not marking gateways
//! down; here a failed connect counts exactly like a failed probe.

/// When a gateway changes state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failures that mark an up gateway down.
    pub down_after: u32,
    /// Consecutive successes that mark a down gateway up.
    pub up_after: u32,
    /// Probe reply codes that count as "up" (dispatcher's default is only 200).
    pub up_codes: Vec<u16>,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            down_after: 3,
            up_after: 2,
            up_codes: vec![200],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    Up,
    Down,
}

/// One gateway's health and the current run of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    state: HealthState,
    run: u32,
}

impl Default for Health {
    /// A new gateway is up until proven otherwise, so that calls flow at start-up.
    fn default() -> Self {
        Health {
            state: HealthState::Up,
            run: 0,
        }
    }
}

impl Health {
    pub fn state(&self) -> HealthState {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == HealthState::Up
    }

    /// A probe answered with `code`. Returns the new state when it changed.
    pub fn probe_answered(&mut self, code: u16, policy: &HealthPolicy) -> Option<HealthState> {
        self.record(policy.up_codes.contains(&code), policy)
    }

    /// A probe timed out, or a connection to the gateway failed.
    pub fn failed(&mut self, policy: &HealthPolicy) -> Option<HealthState> {
        self.record(false, policy)
    }

    fn record(&mut self, success: bool, policy: &HealthPolicy) -> Option<HealthState> {
        // A result that agrees with the current state resets the run toward a change.
        let agrees = success == (self.state == HealthState::Up);
        if agrees {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if success {
            policy.up_after
        } else {
            policy.down_after
        };
        if self.run < needed.max(1) {
            return None;
        }
        self.run = 0;
        self.state = if success {
            HealthState::Up
        } else {
            HealthState::Down
        };
        Some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_prevent_flapping() {
        let policy = HealthPolicy::default();
        let mut h = Health::default();
        assert_eq!(h.failed(&policy), None);
        assert_eq!(h.failed(&policy), None);
        assert_eq!(
            h.probe_answered(200, &policy),
            None,
            "a success resets the run"
        );
        assert_eq!(h.failed(&policy), None);
        assert_eq!(h.failed(&policy), None);
        assert_eq!(h.failed(&policy), Some(HealthState::Down));
        assert!(!h.is_up());
        assert_eq!(h.probe_answered(200, &policy), None);
        assert_eq!(h.probe_answered(200, &policy), Some(HealthState::Up));
    }

    #[test]
    fn only_configured_codes_count_as_up() {
        let policy = HealthPolicy {
            down_after: 1,
            up_after: 1,
            up_codes: vec![200, 404],
        };
        let mut h = Health::default();
        assert_eq!(h.probe_answered(503, &policy), Some(HealthState::Down));
        assert_eq!(h.probe_answered(404, &policy), Some(HealthState::Up));
    }
}
