//! Benchmarks live in this package's `[[bench]]` targets; figures are in README.md.
