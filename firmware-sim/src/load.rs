//! Load mode (`--rate R`): a target aggregate message rate spread evenly across the pens.
//!
//! Sessions stay open and each pen is paced at `R / pens` messages per second by running its
//! simulated clock at the matching speed. Pens can share `--connections K` MQTT connections
//! (round robin), which costs them their individual last wills.

/// Most unacknowledged QoS 1 publishes per connection in load mode.
pub const LOAD_INFLIGHT: u16 = 1000;
/// Most unacknowledged QoS 1 publishes per connection otherwise (rumqttc's default).
pub const PEN_INFLIGHT: u16 = 100;

/// How a load run is paced and connected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadPlan {
    /// Target messages per second of each pen.
    pub per_pen_rate: f64,
    /// Simulated seconds per real second that yield `per_pen_rate` samples per second.
    pub speed: f64,
    /// Connections shared among the pens (`None`: one per pen).
    pub connections: Option<usize>,
}

impl LoadPlan {
    /// Spreads `rate` messages/s over `pens` pens sampling every `sample_interval_ms`.
    pub fn new(
        rate: f64,
        pens: usize,
        sample_interval_ms: u64,
        connections: Option<usize>,
    ) -> Self {
        let per_pen_rate = rate / pens.max(1) as f64;
        let speed = per_pen_rate * sample_interval_ms as f64 / 1000.0;
        Self {
            per_pen_rate,
            speed,
            connections: connections.map(|k| k.clamp(1, pens.max(1))),
        }
    }

    /// The shared connection a pen uses, if connections are shared.
    pub fn connection_of(&self, pen_index: usize) -> Option<usize> {
        self.connections.map(|k| pen_index % k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spreads_over_pens_and_connections() {
        let plan = LoadPlan::new(20_000.0, 100, 1000, Some(8));
        assert_eq!(plan.per_pen_rate, 200.0);
        assert_eq!(plan.speed, 200.0);
        assert_eq!(plan.connection_of(9), Some(1));
        assert_eq!(LoadPlan::new(100.0, 2, 500, Some(10)).connections, Some(2));
        assert_eq!(LoadPlan::new(100.0, 2, 500, None).connection_of(1), None);
        assert_eq!(LoadPlan::new(100.0, 2, 500, None).speed, 25.0);
    }
}
