use evergreen_pki::Duration;
use evergreen_pki::renewal::{FixedJitter, RenewalPolicy, RenewalState};
use evergreen_test_util::fixed_now;

#[test]
fn the_window_edges_of_a_365_day_certificate() {
    let policy = RenewalPolicy::default();
    let nb = fixed_now();
    let na = nb + Duration::days(365);
    let opens = na - Duration::days(90);
    assert_eq!(
        policy.state(nb, na, opens + Duration::days(1)),
        RenewalState::Due,
        "one day inside"
    );
    assert_eq!(
        policy.state(nb, na, opens - Duration::days(1)),
        RenewalState::Fresh { renew_at: opens },
        "one day outside"
    );
    assert_eq!(
        policy.state(nb, na, na + Duration::seconds(1)),
        RenewalState::Expired
    );
    assert_eq!(
        policy.state(nb, na, nb - Duration::seconds(1)),
        RenewalState::NotYetValid
    );
    assert!(RenewalState::Expired.needs_renewal() && !policy.state(nb, na, nb).needs_renewal());
}

#[test]
fn short_lived_certificates_renew_with_a_third_of_their_life_left() {
    let policy = RenewalPolicy::default();
    let nb = fixed_now();
    for days in [92, 30, 1] {
        let na = nb + Duration::days(days);
        let third = Duration::days(days) / 3;
        assert_eq!(policy.window(nb, na), third);
        assert!(
            !policy
                .state(nb, na, na - third - Duration::seconds(1))
                .needs_renewal(),
            "{days}"
        );
        assert!(
            policy
                .state(nb, na, na - third + Duration::seconds(1))
                .needs_renewal(),
            "{days}"
        );
    }
}

#[test]
fn jitter_moves_renewal_earlier_within_its_share_of_the_window() {
    let policy = RenewalPolicy {
        renew_before: Duration::days(90),
        jitter: 0.1,
    };
    let nb = fixed_now();
    let na = nb + Duration::days(365);
    let base = policy.renew_at(nb, na);
    assert_eq!(
        policy.renew_at_with_jitter(nb, na, &mut FixedJitter(0.0)),
        base
    );
    assert_eq!(
        policy.renew_at_with_jitter(nb, na, &mut FixedJitter(0.5)),
        base - Duration::days(9) / 2
    );
    let latest = policy.renew_at_with_jitter(nb, na, &mut FixedJitter(1.0));
    assert!(latest >= base - Duration::days(9) && latest < base);
    let mut random = evergreen_pki::renewal::RandomJitter;
    for _ in 0..100 {
        let t = policy.renew_at_with_jitter(nb, na, &mut random);
        assert!(t <= base && t >= base - Duration::days(9));
    }
}
