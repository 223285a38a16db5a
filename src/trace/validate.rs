//! Checking a trace against the model it is meant for.
//!
//! Readers and importers only check that a file is well formed; whether its content makes sense
//! for a model is checked here, and every violation is reported (not just the first) so a user can
//! fix a file in one pass: expert ids below the model's expert count, no expert twice in one
//! token's top-k at a layer, gate weights and loads finite and non-negative, and the trace's own
//! expert count equal to the model's.

use std::fmt;

use crate::trace::{ExpertLoads, RoutingTrace, Trace};

/// Violations kept in full; past this only a count is kept, so a badly wrong huge trace does not
/// exhaust memory.
pub const MAX_STORED_VIOLATIONS: usize = 1000;

/// One thing wrong with a trace, located by row and column.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Token index (for loads: layer index); `None` for a property of the whole trace.
    pub row: Option<usize>,
    /// Where in the row: "layer 3/rank 1" for tokens, "expert 7" for loads, a field name for
    /// whole-trace violations.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row}, column {}: {}", self.column, self.message),
            None => write!(f, "{}: {}", self.column, self.message),
        }
    }
}

/// The outcome of [`validate`]: the first [`MAX_STORED_VIOLATIONS`] violations in row order and
/// the total count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    /// Violations in row, then column order (whole-trace ones first).
    pub violations: Vec<Violation>,
    /// Number of violations found, including those not stored.
    pub total: usize,
}

impl Validation {
    /// Whether the trace has no violation at all.
    pub fn is_clean(&self) -> bool {
        self.total == 0
    }

    /// Records a violation; `describe` builds its column and message only if it is stored.
    fn report(&mut self, row: Option<usize>, describe: impl FnOnce() -> (String, String)) {
        self.total += 1;
        if self.violations.len() < MAX_STORED_VIOLATIONS {
            let (column, message) = describe();
            self.violations.push(Violation {
                row,
                column,
                message,
            });
        }
    }
}

impl fmt::Display for Validation {
    /// One violation per line, then how many were not stored; "no violations" when clean.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "no violations");
        }
        for violation in &self.violations {
            writeln!(f, "{violation}")?;
        }
        let omitted = self.total - self.violations.len();
        if omitted > 0 {
            writeln!(f, "... and {omitted} more")?;
        }
        Ok(())
    }
}

/// Checks `trace` against a model with `num_experts` routed experts per layer.
pub fn validate(trace: &Trace, num_experts: usize) -> Validation {
    let mut found = Validation::default();
    if trace.num_experts() != num_experts {
        found.report(None, || {
            (
                "num_experts".into(),
                format!(
                    "the trace has {} experts per layer but the model has {num_experts}",
                    trace.num_experts()
                ),
            )
        });
    }
    match trace {
        Trace::Tokens(routing) => check_routing(routing, num_experts, &mut found),
        Trace::Loads(loads) => check_loads(loads, &mut found),
    }
    found
}

/// Expert range, repeats inside a top-k, and gate weights, token by token.
fn check_routing(routing: &RoutingTrace, num_experts: usize, found: &mut Validation) {
    for token in 0..routing.num_tokens() {
        for (layer, routes) in routing.layers().iter().enumerate() {
            let experts = routes.experts_of(token);
            let weights = routes.weights_of(token);
            for (rank, &expert) in experts.iter().enumerate() {
                let at = || format!("layer {layer}/rank {rank}");
                if usize::from(expert) >= num_experts {
                    found.report(Some(token), || {
                        (at(), format!("expert {expert} >= {num_experts} experts"))
                    });
                }
                if let Some(first) = experts[..rank].iter().position(|&e| e == expert) {
                    found.report(Some(token), || {
                        (at(), format!("expert {expert} repeats rank {first}"))
                    });
                }
                if let Some(problem) = weights.and_then(|w| sign_problem(w[rank])) {
                    found.report(Some(token), || (at(), format!("gate weight {problem}")));
                }
            }
        }
    }
}

/// Finite, non-negative loads.
fn check_loads(loads: &ExpertLoads, found: &mut Validation) {
    for layer in 0..loads.num_layers() {
        for (expert, &load) in loads.layer(layer).iter().enumerate() {
            if let Some(problem) = sign_problem(load) {
                found.report(Some(layer), || {
                    (format!("expert {expert}"), format!("load {problem}"))
                });
            }
        }
    }
}

/// "NaN is not finite" / "-2 is negative" for a value that must be finite and non-negative.
pub(crate) fn sign_problem(value: impl Into<f64>) -> Option<String> {
    let value = value.into();
    if !value.is_finite() {
        Some(format!("{value} is not finite"))
    } else if value < 0.0 {
        Some(format!("{value} is negative"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LayerRouting, TokenMeta};

    fn violation(row: usize, column: &str, message: &str) -> Violation {
        Violation {
            row: Some(row),
            column: column.into(),
            message: message.into(),
        }
    }

    /// 3 tokens x 2 layers recorded with 8 experts; layer 1 has gate weights.
    /// Layer 0: [1, 9], [2, 2], []. Layer 1: [0] w NaN, [3] w -0.5, [7, 8] w 0.5 each.
    fn faulty_trace() -> Trace {
        let layer0 = LayerRouting::new(vec![0, 2, 4, 4], vec![1, 9, 2, 2], None).unwrap();
        let layer1 = LayerRouting::new(
            vec![0, 1, 2, 4],
            vec![0, 3, 7, 8],
            Some(vec![f32::NAN, -0.5, 0.5, 0.5]),
        )
        .unwrap();
        Trace::Tokens(RoutingTrace::new(8, vec![layer0, layer1], TokenMeta::default()).unwrap())
    }

    #[test]
    fn every_token_violation_is_listed_in_row_order() {
        let found = validate(&faulty_trace(), 8);
        assert_eq!(
            found.violations,
            [
                violation(0, "layer 0/rank 1", "expert 9 >= 8 experts"),
                violation(0, "layer 1/rank 0", "gate weight NaN is not finite"),
                violation(1, "layer 0/rank 1", "expert 2 repeats rank 0"),
                violation(1, "layer 1/rank 0", "gate weight -0.5 is negative"),
                violation(2, "layer 1/rank 1", "expert 8 >= 8 experts"),
            ]
        );
        assert_eq!(found.total, 5);
        assert_eq!(
            found.violations[0].to_string(),
            "row 0, column layer 0/rank 1: expert 9 >= 8 experts"
        );
    }

    #[test]
    fn a_wider_model_accepts_the_ids_but_flags_the_width() {
        let found = validate(&faulty_trace(), 16);
        assert_eq!(found.total, 4);
        assert_eq!(
            found.violations[0].to_string(),
            "num_experts: the trace has 8 experts per layer but the model has 16"
        );
        assert_eq!(
            found.violations[1],
            violation(0, "layer 1/rank 0", "gate weight NaN is not finite")
        );
    }

    #[test]
    fn loads_must_be_finite_and_non_negative() {
        let loads =
            ExpertLoads::new(2, vec![vec![1.0, f64::NAN], vec![-2.0, f64::INFINITY]]).unwrap();
        let found = validate(&Trace::Loads(loads), 2);
        assert_eq!(
            found.violations,
            [
                violation(0, "expert 1", "load NaN is not finite"),
                violation(1, "expert 0", "load -2 is negative"),
                violation(1, "expert 1", "load inf is not finite"),
            ]
        );
    }

    #[test]
    fn stored_violations_are_capped_but_counted() {
        // 1500 tokens, each routed to expert 5 of a 4-expert model.
        let layer = LayerRouting::fixed_k(1, vec![5; 1500], None).unwrap();
        let trace = RoutingTrace::new(4, vec![layer], TokenMeta::default()).unwrap();
        let found = validate(&Trace::Tokens(trace), 4);
        assert_eq!(found.total, 1500);
        assert_eq!(found.violations.len(), MAX_STORED_VIOLATIONS);
        assert_eq!(found.violations[999].row, Some(999));
        assert!(found.to_string().ends_with(
            "row 999, column layer 0/rank 0: expert 5 >= 4 experts\n... and 500 more\n"
        ));
    }

    #[test]
    fn a_sound_trace_is_clean() {
        let layer =
            LayerRouting::fixed_k(2, vec![0, 1, 3, 2], Some(vec![0.5, 0.5, 1.0, 0.0])).unwrap();
        let trace = RoutingTrace::new(4, vec![layer], TokenMeta::default()).unwrap();
        let found = validate(&Trace::Tokens(trace), 4);
        assert!(found.is_clean());
        assert_eq!(found.to_string(), "no violations");
    }
}
