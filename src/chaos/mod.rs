//! See the crate's `# Layout`.
//!
//! A chaos run: the scenario ([`scenario`]), the seeded fault schedule ([`schedule`],
//! pure) and its execution ([`nemesis`]), the producers and consumers
//! ([`workload`]), the cluster sampler beside them ([`sampler`]), and the run loop
//! that ends by healing, draining and checking ([`run()`]).

pub mod nemesis;
pub mod sampler;
pub mod scenario;
pub mod schedule;
pub mod workload;

mod recorder;
mod run;

pub use run::{run, ChaosError, RunOptions, RunOutcome};
pub use scenario::{load_scenario, parse_scenario, AlgorithmChoice, Scenario, ScenarioError};
