//! See the crate's `# Layout`.
//!
//! A chaos run: the scenario ([`scenario`]), the seeded fault schedule ([`schedule`],
//! pure) and its execution ([`nemesis`]), the producers and consumers
//! ([`workload`]), the cluster sampler beside them ([`sampler`]), and the run loop
//! that ends by healing, draining, reading each member's own view of the queue
//! tree ([`members`]) and checking ([`run()`]).

pub mod members;
pub mod nemesis;
pub mod sampler;
pub mod scenario;
pub mod schedule;
pub mod workload;

mod recorder;
mod run;

pub(crate) use run::wait_for_signal;
pub use run::{run, ChaosError, RunOptions, RunOutcome, Say};
pub use scenario::{load_scenario, parse_scenario, AlgorithmChoice, Scenario, ScenarioError};
