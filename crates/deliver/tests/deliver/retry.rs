//! The retry policy: backoff with jitter, Retry-After, a shortest delay, and when to give up.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;
use trailkeep_deliver::alerts::retry::{Next, RetryPolicy};
use trailkeep_deliver::alerts::Attempt;

const HOUR: Duration = Duration::from_secs(3600);

fn retry(after: Option<Duration>) -> Attempt {
    Attempt::Retry {
        status: Some(503),
        after,
        error: "HTTP 503 Service Unavailable: busy".to_string(),
    }
}

fn refused() -> Attempt {
    Attempt::Refused {
        status: 404,
        error: "HTTP 404 Not Found: no such hook".to_string(),
    }
}

#[test]
fn defaults() {
    let p = RetryPolicy::default();
    assert_eq!(p.base, Duration::from_millis(500));
    assert_eq!(p.max_backoff, Duration::from_secs(60));
    assert_eq!(p.refused_attempts, 3);
    assert_eq!(p.give_up_after, 24 * HOUR);
}

#[test]
fn ceilings_double_from_the_base_up_to_the_cap() {
    let p = RetryPolicy::default();
    let ms = Duration::from_millis;
    let ceilings: Vec<Duration> = (1..=9).map(|n| p.ceiling(n)).collect();
    assert_eq!(
        ceilings,
        [
            ms(500),
            ms(1000),
            ms(2000),
            ms(4000),
            ms(8000),
            ms(16000),
            ms(32000),
            ms(60000),
            ms(60000)
        ]
    );
    assert_eq!(p.ceiling(0), ms(500));
    assert_eq!(p.ceiling(u32::MAX), ms(60000));
}

#[test]
fn delivered_is_done() {
    let p = RetryPolicy::default();
    assert_eq!(
        p.next(1, Duration::ZERO, &Attempt::Delivered { status: 200 }),
        Next::Done
    );
    assert_eq!(
        p.next(7, 30 * HOUR, &Attempt::Delivered { status: 204 }),
        Next::Done
    );
}

#[test]
fn refused_alerts_are_dead_after_three_attempts() {
    let p = RetryPolicy::default();
    for attempts in [1, 2] {
        match p.next(attempts, Duration::ZERO, &refused()) {
            Next::RetryAfter(d) => assert!(d >= p.base && d <= p.ceiling(attempts), "{d:?}"),
            other => panic!("attempt {attempts}: {other:?}"),
        }
    }
    for attempts in [3, 4, 100] {
        match p.next(attempts, Duration::ZERO, &refused()) {
            Next::Dead(why) => {
                assert!(why.contains("refused"), "{why}");
                assert!(why.contains("404 Not Found: no such hook"), "{why}");
            }
            other => panic!("attempt {attempts}: {other:?}"),
        }
    }
}

#[test]
fn retry_after_is_used_as_given_up_to_an_hour() {
    let p = RetryPolicy::default();
    let s = Duration::from_secs;
    assert_eq!(
        p.next(1, Duration::ZERO, &retry(Some(s(7)))),
        Next::RetryAfter(s(7))
    );
    assert_eq!(
        p.next(1, Duration::ZERO, &retry(Some(s(600)))),
        Next::RetryAfter(s(600))
    );
    assert_eq!(
        p.next(1, Duration::ZERO, &retry(Some(5 * HOUR))),
        Next::RetryAfter(HOUR)
    );
}

#[test]
fn no_retry_comes_sooner_than_the_base() {
    let p = RetryPolicy::default();
    let ms = Duration::from_millis;
    // A receiver answering `Retry-After: 0` (or a few milliseconds) is not hammered.
    for after in [ms(0), ms(1), ms(499)] {
        assert_eq!(
            p.next(20, Duration::ZERO, &retry(Some(after))),
            Next::RetryAfter(ms(500)),
            "Retry-After {after:?}"
        );
    }
    assert_eq!(
        p.next(1, Duration::ZERO, &retry(Some(ms(501)))),
        Next::RetryAfter(ms(501))
    );
    // Neither does a low jitter draw: the first retry waits the base, later ones at least it.
    let mut rng = StdRng::seed_from_u64(11);
    for attempts in 1..12 {
        for _ in 0..200 {
            for last in [retry(None), refused()] {
                if let Next::RetryAfter(d) = p.next_with(attempts, Duration::ZERO, &last, &mut rng)
                {
                    assert!(d >= p.base, "attempt {attempts}: {d:?}");
                }
            }
        }
    }
    assert_eq!(p.backoff(1, &mut rng), ms(500));
    // A policy whose largest ceiling is below the base still waits the base.
    let odd = RetryPolicy {
        max_backoff: ms(100),
        ..RetryPolicy::default()
    };
    assert_eq!(odd.backoff(5, &mut rng), ms(500));
}

#[test]
fn retryable_failures_are_dead_after_a_day() {
    let p = RetryPolicy::default();
    let just_under = 24 * HOUR - Duration::from_secs(1);
    assert!(matches!(
        p.next(500, just_under, &retry(None)),
        Next::RetryAfter(_)
    ));
    match p.next(501, 24 * HOUR, &retry(Some(Duration::from_secs(5)))) {
        Next::Dead(why) => {
            assert!(why.contains("24h"), "{why}");
            assert!(why.contains("503"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jitter_spreads_delays_over_the_whole_range() {
    let p = RetryPolicy::default();
    let mut rng = StdRng::seed_from_u64(7);
    let delays: Vec<Duration> = (0..1000).map(|_| p.backoff(6, &mut rng)).collect();
    let ceiling = p.ceiling(6);
    assert!(delays.iter().all(|d| *d >= p.base && *d <= ceiling));
    // Delays fill [base, ceiling], not a narrow band near either end.
    let low = delays.iter().filter(|d| **d < ceiling / 4).count();
    let high = delays.iter().filter(|d| **d > ceiling * 3 / 4).count();
    assert!(low > 150 && high > 150, "low {low}, high {high}");
}

proptest! {
    #[test]
    fn delays_stay_within_bounds(
        attempts in 0u32..100_000,
        failing_secs in 0u64..(24 * 3600),
        after_secs in proptest::option::of(0u64..u64::MAX / 2),
        base_ms in 1u64..10_000,
        max_ms in 1u64..600_000,
        refused_attempts in 1u32..10,
        seed in any::<u64>(),
        refused_kind in any::<bool>(),
    ) {
        let p = RetryPolicy {
            base: Duration::from_millis(base_ms),
            max_backoff: Duration::from_millis(max_ms),
            refused_attempts,
            give_up_after: 24 * HOUR,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let failing = Duration::from_secs(failing_secs);
        let last = if refused_kind { refused() } else { retry(after_secs.map(Duration::from_secs)) };
        let next = p.next_with(attempts, failing, &last, &mut rng);
        prop_assert!(p.ceiling(attempts) <= p.max_backoff);
        prop_assert!(p.ceiling(attempts) <= p.ceiling(attempts.saturating_add(1)));
        match (&last, next) {
            (Attempt::Retry { after: Some(a), .. }, Next::RetryAfter(d)) => {
                prop_assert_eq!(d, (*a).min(HOUR).max(p.base));
            }
            (Attempt::Retry { after: None, .. }, Next::RetryAfter(d)) => {
                prop_assert!(d >= p.base && d <= p.ceiling(attempts).max(p.base));
            }
            (Attempt::Refused { .. }, Next::RetryAfter(d)) => {
                prop_assert!(attempts.max(1) < refused_attempts);
                prop_assert!(d >= p.base && d <= p.ceiling(attempts).max(p.base));
            }
            (Attempt::Refused { .. }, Next::Dead(_)) => {
                prop_assert!(attempts.max(1) >= refused_attempts);
            }
            (last, next) => prop_assert!(false, "{:?} -> {:?}", last, next),
        }
    }
}
