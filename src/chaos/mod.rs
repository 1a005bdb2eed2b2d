//! See the crate's `# Layout`.
//!
//! A chaos run: the scenario ([`scenario`]), the seeded fault schedule and its
//! execution ([`nemesis`]), the producers and consumers ([`workload`]), and the run
//! loop that ends by healing, draining and checking ([`run`]).

pub mod scenario;

pub use scenario::{load_scenario, parse_scenario, Scenario, ScenarioError};
pub mod nemesis;
pub mod workload;

mod deps;
