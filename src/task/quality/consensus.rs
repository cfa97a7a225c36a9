//! Weighted consensus of a peer review, and the explainer's view of it: the prototype's
//! consensus explainer, as pure arithmetic over the panel.
//!
//! # Rules
//! - Every panel seat has a weight (its agent role's, fixed when the review started).
//! - A vote counts `weight × value × confidence`, value 1 for APPROVE, ½ for CONDITIONAL and
//!   0 for REJECT; the score is the sum over the votes cast divided by the whole panel's
//!   weight (seats that have not voted count in the denominator: silence is not assent).
//! - The review PASSES once `score ≥ quorum`, and is REJECTED once the quorum is out of
//!   reach: even if every remaining seat approved with full confidence,
//!   `(counted + Σ remaining weights) / total < quorum`.
//! - A remaining seat "could pass it alone" when its approval at full confidence would take
//!   the score to the quorum by itself.
//!
//! Scores are compared with a tolerance of 1e-9, so a score that reaches the quorum exactly
//! (3 of 4 equal seats at 0.75) passes despite binary rounding.

use super::model::ReviewDecision;

const TOLERANCE: f64 = 1e-9;

/// One seat of the panel, with its vote if cast.
#[derive(Debug, Clone, PartialEq)]
pub struct Seat {
    pub weight: f64,
    pub vote: Option<(ReviewDecision, f64)>,
}

/// What a review's votes add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The panel's whole weight.
    pub total_weight: f64,
    /// Σ weight × value × confidence over the votes cast.
    pub counted_weight: f64,
    /// `counted_weight / total_weight`.
    pub score: f64,
    /// The best score still possible: every remaining seat approving at full confidence.
    pub max_score: f64,
    /// Weight still missing to reach the quorum (0 once reached).
    pub missing_weight: f64,
    /// Per seat, in the panel's order: what its vote counts (0 before it votes).
    pub contributions: Vec<f64>,
    /// Per seat: not voted yet, and its approval alone would reach the quorum.
    pub could_pass_alone: Vec<bool>,
    pub outcome: Option<Outcome>,
}

/// How a review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Rejected,
}

/// What a decision is worth before weight and confidence.
pub fn value(decision: ReviewDecision) -> f64 {
    match decision {
        ReviewDecision::Approve => 1.0,
        ReviewDecision::Conditional => 0.5,
        ReviewDecision::Reject => 0.0,
    }
}

/// Adds up `seats` against `quorum` (in (0, 1]). An empty panel (or one weighing nothing)
/// scores 0 and is rejected: nobody can pass it.
pub fn tally(quorum: f64, seats: &[Seat]) -> Tally {
    let total_weight: f64 = seats.iter().map(|s| s.weight).sum();
    let contributions: Vec<f64> = seats
        .iter()
        .map(|s| {
            s.vote
                .map_or(0.0, |(d, confidence)| s.weight * value(d) * confidence)
        })
        .collect();
    let counted_weight: f64 = contributions.iter().sum();
    let remaining: f64 = seats
        .iter()
        .filter(|s| s.vote.is_none())
        .map(|s| s.weight)
        .sum();
    let ratio = |w: f64| {
        if total_weight > 0.0 {
            w / total_weight
        } else {
            0.0
        }
    };
    let score = ratio(counted_weight);
    let max_score = ratio(counted_weight + remaining);
    let reaches = |s: f64| s + TOLERANCE >= quorum;
    let outcome = if reaches(score) && total_weight > 0.0 {
        Some(Outcome::Passed)
    } else if !reaches(max_score) || total_weight <= 0.0 {
        Some(Outcome::Rejected)
    } else {
        None
    };
    let could_pass_alone = seats
        .iter()
        .map(|s| s.vote.is_none() && reaches(ratio(counted_weight + s.weight)))
        .collect();
    Tally {
        total_weight,
        counted_weight,
        score,
        max_score,
        missing_weight: (quorum * total_weight - counted_weight).max(0.0),
        contributions,
        could_pass_alone,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReviewDecision::{Approve as A, Conditional as C, Reject as R};

    fn seat(weight: f64, vote: Option<(ReviewDecision, f64)>) -> Seat {
        Seat { weight, vote }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Each row: quorum, the panel (weight, vote), and what the rules give, worked out by
    /// hand in the comment.
    #[test]
    fn vote_sets_by_hand() {
        // The default weights: security 1.5, reviewer 1.25, developer 1, tester 1 (total 4.75).
        let panel = [1.5, 1.25, 1.0, 1.0];
        struct Row {
            quorum: f64,
            votes: [Option<(ReviewDecision, f64)>; 4],
            score: f64,
            outcome: Option<Outcome>,
            alone: [bool; 4],
        }
        let rows = [
            // Nobody voted: 0 / 4.75. The largest seat alone: 1.5 / 4.75 = 0.316 < 0.75.
            Row {
                quorum: 0.75,
                votes: [None, None, None, None],
                score: 0.0,
                outcome: None,
                alone: [false; 4],
            },
            // security + reviewer approve: 2.75 / 4.75 = 0.5789. Either remaining seat adds
            // 1: 3.75 / 4.75 = 0.7895 ≥ 0.75, so each could pass it alone.
            Row {
                quorum: 0.75,
                votes: [Some((A, 1.0)), Some((A, 1.0)), None, None],
                score: 2.75 / 4.75,
                outcome: None,
                alone: [false, false, true, true],
            },
            // Three approvals: 3.75 / 4.75 = 0.7895 ≥ 0.75: passed.
            Row {
                quorum: 0.75,
                votes: [Some((A, 1.0)), Some((A, 1.0)), Some((A, 1.0)), None],
                score: 3.75 / 4.75,
                outcome: Some(Outcome::Passed),
                alone: [false, false, false, true],
            },
            // Two rejections: at best (0 + 2) / 4.75 = 0.421 < 0.75: rejected.
            Row {
                quorum: 0.75,
                votes: [Some((R, 1.0)), Some((R, 0.9)), None, None],
                score: 0.0,
                outcome: Some(Outcome::Rejected),
                alone: [false; 4],
            },
            // security approves at 0.5 (0.75), reviewer conditional at 1 (0.625), developer
            // approves (1): 2.375 / 4.75 = 0.5. Best: 3.375 / 4.75 = 0.7105 < 0.75: rejected.
            Row {
                quorum: 0.75,
                votes: [Some((A, 0.5)), Some((C, 1.0)), Some((A, 1.0)), None],
                score: 0.5,
                outcome: Some(Outcome::Rejected),
                alone: [false, false, false, false],
            },
            // Quorum 0.5; security rejects: best (0 + 3.25) / 4.75 = 0.684 ≥ 0.5, still open.
            // reviewer and developer approve: 2.25 / 4.75 = 0.4737 < 0.5; tester alone:
            // 3.25 / 4.75 = 0.684 ≥ 0.5.
            Row {
                quorum: 0.5,
                votes: [Some((R, 1.0)), Some((A, 1.0)), Some((A, 1.0)), None],
                score: 2.25 / 4.75,
                outcome: None,
                alone: [false, false, false, true],
            },
            // Conditional counts half: security conditional at 1 (0.75) + reviewer approve at
            // 0.8 (1.0) = 1.75 / 4.75 = 0.368; developer alone: 2.75 / 4.75 = 0.579 < 0.75;
            // best 3.75 / 4.75 = 0.789: open.
            Row {
                quorum: 0.75,
                votes: [Some((C, 1.0)), Some((A, 0.8)), None, None],
                score: 1.75 / 4.75,
                outcome: None,
                alone: [false; 4],
            },
        ];
        for (i, row) in rows.iter().enumerate() {
            let seats: Vec<Seat> = panel
                .iter()
                .zip(row.votes)
                .map(|(w, v)| seat(*w, v))
                .collect();
            let t = tally(row.quorum, &seats);
            assert!(close(t.total_weight, 4.75), "row {i}");
            assert!(
                close(t.score, row.score),
                "row {i}: score {} vs {}",
                t.score,
                row.score
            );
            assert_eq!(t.outcome, row.outcome, "row {i}");
            assert_eq!(t.could_pass_alone, row.alone, "row {i}");
        }
    }

    #[test]
    fn exactly_at_the_quorum_passes() {
        // Four equal seats, three full approvals: 3 / 4 = 0.75.
        let seats = [
            seat(1.0, Some((A, 1.0))),
            seat(1.0, Some((A, 1.0))),
            seat(1.0, Some((A, 1.0))),
            seat(1.0, None),
        ];
        let t = tally(0.75, &seats);
        assert_eq!(t.outcome, Some(Outcome::Passed));
        assert!(close(t.missing_weight, 0.0));
        // 0.1 + 0.2 style rounding: 0.7 of weight 1 + 0.05 of weight 1 over 1.0 total.
        let seats = [
            seat(0.7, Some((A, 1.0))),
            seat(0.1, Some((A, 0.5))),
            seat(0.2, None),
        ];
        assert_eq!(tally(0.75, &seats).outcome, Some(Outcome::Passed));
    }

    #[test]
    fn contributions_missing_weight_and_unanimity() {
        let seats = [seat(2.0, Some((C, 0.5))), seat(1.0, None), seat(1.0, None)];
        let t = tally(0.75, &seats);
        assert_eq!(t.contributions, vec![0.5, 0.0, 0.0]);
        // 0.75 × 4 − 0.5 = 2.5 missing; the two remaining seats bring 2 at most: rejected.
        assert!(close(t.missing_weight, 2.5));
        assert_eq!(t.outcome, Some(Outcome::Rejected));
        // Quorum 1 needs everyone at full confidence: one 0.9 approval ends it.
        let t = tally(1.0, &[seat(1.0, Some((A, 0.9))), seat(1.0, None)]);
        assert_eq!(t.outcome, Some(Outcome::Rejected));
        assert_eq!(tally(0.75, &[]).outcome, Some(Outcome::Rejected));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn decision() -> impl Strategy<Value = ReviewDecision> {
            prop_oneof![Just(A), Just(C), Just(R)]
        }

        fn panel() -> impl Strategy<Value = Vec<Seat>> {
            prop::collection::vec(
                (0.25f64..4.0, prop::option::of((decision(), 0.0f64..=1.0))),
                1..12,
            )
            .prop_map(|seats| {
                seats
                    .into_iter()
                    .map(|(weight, vote)| Seat { weight, vote })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The outcome is what the rules say of the numbers, and the numbers agree.
            #[test]
            fn outcome_follows_the_numbers(quorum in 0.05f64..=1.0, seats in panel()) {
                let t = tally(quorum, &seats);
                prop_assert!(t.score >= 0.0 && t.score <= t.max_score + 1e-12 && t.max_score <= 1.0 + 1e-12);
                let passed = t.score + TOLERANCE >= quorum;
                let out_of_reach = t.max_score + TOLERANCE < quorum;
                prop_assert_eq!(t.outcome == Some(Outcome::Passed), passed);
                prop_assert_eq!(t.outcome == Some(Outcome::Rejected), !passed && out_of_reach);
                for (seat, alone) in seats.iter().zip(&t.could_pass_alone) {
                    // A seat that could pass it alone has not voted, and the review is open.
                    if *alone {
                        prop_assert!(seat.vote.is_none());
                    }
                }
                if t.outcome.is_none() {
                    // Open means someone can still move it: the remaining weight is not zero.
                    prop_assert!(seats.iter().any(|s| s.vote.is_none()));
                }
            }

            /// An approval never lowers the score, a rejection never raises the best score
            /// still possible.
            #[test]
            fn votes_move_the_score_the_right_way(
                quorum in 0.05f64..=1.0,
                seats in panel(),
                pick in any::<prop::sample::Index>(),
                confidence in 0.0f64..=1.0,
            ) {
                let open: Vec<usize> = (0..seats.len()).filter(|i| seats[*i].vote.is_none()).collect();
                prop_assume!(!open.is_empty());
                let i = open[pick.index(open.len())];
                let before = tally(quorum, &seats);
                let mut approved = seats.clone();
                approved[i].vote = Some((A, confidence));
                prop_assert!(tally(quorum, &approved).score + 1e-12 >= before.score);
                let mut rejected = seats.clone();
                rejected[i].vote = Some((R, confidence));
                prop_assert!(tally(quorum, &rejected).max_score <= before.max_score + 1e-12);
            }
        }
    }
}
