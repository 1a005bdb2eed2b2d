//! See the crate's `# Layout`.
