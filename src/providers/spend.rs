//! What the day's model calls cost, in USD, from each answer's token counts (estimated from
//! the text when the provider reports none) and the model's configured prices. In memory:
//! the day is the UTC day, and a restart starts the count again.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::ModelConfig;
use crate::sync::lock;

#[derive(Debug, Default)]
pub struct Spend {
    /// (UTC day number, USD spent that day)
    today: Mutex<(u64, f64)>,
}

fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// The cost of one call.
pub fn cost_usd(model: &ModelConfig, tokens_in: u64, tokens_out: u64) -> f64 {
    (tokens_in as f64 * model.cost_input_per_mtok + tokens_out as f64 * model.cost_output_per_mtok)
        / 1e6
}

/// Token counts: the provider's, else estimated from the characters sent and received
/// (the one estimate, `crate::tokens`).
pub fn tokens_or_estimate(reported: Option<u64>, chars: usize) -> u64 {
    reported.unwrap_or_else(|| crate::tokens::tokens_for_chars(chars) as u64)
}

impl Spend {
    pub fn add(&self, usd: f64) {
        if usd <= 0.0 || !usd.is_finite() {
            return;
        }
        let day = utc_day();
        let mut today = lock(&self.today);
        if today.0 != day {
            *today = (day, 0.0);
        }
        today.1 += usd;
    }

    pub fn today_usd(&self) -> f64 {
        let today = lock(&self.today);
        if today.0 == utc_day() { today.1 } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up_per_day() {
        let model: ModelConfig = toml::from_str(
            "provider = \"anthropic\"\nurl = \"https://x\"\nmodel = \"m\"\ncost_input_per_mtok = 3.0\ncost_output_per_mtok = 15.0\n",
        )
        .unwrap();
        assert!((cost_usd(&model, 1_000_000, 0) - 3.0).abs() < 1e-9);
        assert!((cost_usd(&model, 2_000, 1_000) - 0.021).abs() < 1e-9);
        let spend = Spend::default();
        spend.add(0.5);
        spend.add(0.25);
        spend.add(-1.0);
        spend.add(f64::NAN);
        assert!((spend.today_usd() - 0.75).abs() < 1e-9);
        assert_eq!(tokens_or_estimate(Some(7), 1000), 7);
        assert_eq!(tokens_or_estimate(None, 10), 3);
    }
}
