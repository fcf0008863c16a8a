//! Login throttling: per-account consecutive-failure counting with a growing delay and a lock,
//! and a per-source-address token bucket with bounded memory.
//!
//! Both are plain data: the caller loads and stores [`AccountFailures`] with the account and
//! wraps a [`SourceRateLimiter`] in a mutex. Time is always a parameter (`DateTime<Utc>` from
//! the injected clock); the system clock is never read here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

/// Default number of consecutive failures that locks an account.
pub const DEFAULT_LOCK_AFTER: u32 = 10;
/// Most consecutive failures ever allowed before a lock (NIST SP 800-63B-4: at most 100).
pub const MAX_LOCK_AFTER: u32 = 100;
/// Largest `max_delay` accepted: 1 hour.
pub const MAX_DELAY_CAP: Duration = Duration::hours(1);
/// Default number of source addresses tracked by a [`SourceRateLimiter`].
pub const DEFAULT_MAX_SOURCES: usize = 100_000;

/// A lockout policy that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockoutPolicyError {
    #[error("lock_after must be between 1 and {MAX_LOCK_AFTER}")]
    LockAfter,
    #[error("the base delay must not be negative")]
    BaseDelay,
    #[error("the maximum delay must be at least the base delay and at most {MAX_DELAY_CAP}")]
    MaxDelay,
    #[error("the lock duration must be positive")]
    LockDuration,
}

/// When failed logins slow down and lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account (1..=100).
    pub lock_after: u32,
    /// Delay after the first failure; it doubles with each further one.
    pub base_delay: Duration,
    /// The delay never grows past this.
    pub max_delay: Duration,
    /// How long a lock lasts; `None` keeps it until an administrator unlocks.
    pub lock_duration: Option<Duration>,
}

impl Default for LockoutPolicy {
    /// 10 failures, 1 s doubling up to 60 s, locks lifted after 30 minutes (a lock that only
    /// an administrator lifts lets anyone who knows a username lock its owner out for good).
    fn default() -> Self {
        Self {
            lock_after: DEFAULT_LOCK_AFTER,
            base_delay: Duration::seconds(1),
            max_delay: Duration::seconds(60),
            lock_duration: Some(Duration::minutes(30)),
        }
    }
}

impl LockoutPolicy {
    pub fn validate(&self) -> Result<(), LockoutPolicyError> {
        if !(1..=MAX_LOCK_AFTER).contains(&self.lock_after) {
            return Err(LockoutPolicyError::LockAfter);
        }
        if self.base_delay < Duration::zero() {
            return Err(LockoutPolicyError::BaseDelay);
        }
        if self.max_delay < self.base_delay || self.max_delay > MAX_DELAY_CAP {
            return Err(LockoutPolicyError::MaxDelay);
        }
        if let Some(d) = self.lock_duration
            && d <= Duration::zero()
        {
            return Err(LockoutPolicyError::LockDuration);
        }
        Ok(())
    }

    /// The delay after the `n`th consecutive failure: `base_delay * 2^(n-1)`, capped at
    /// `max_delay` (zero for `n = 0`).
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::zero();
        }
        let mut delay = self.base_delay.min(self.max_delay);
        for _ in 1..failures {
            if delay >= self.max_delay || delay <= Duration::zero() {
                break;
            }
            delay = delay.checked_mul(2).unwrap_or(self.max_delay);
        }
        delay.min(self.max_delay)
    }
}

/// What [`AccountFailures::record_failure`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// No further attempt on this account before `now + delay_before_next`.
    pub delay_before_next: Duration,
    /// This failure locked the account (the caller audits the lock).
    pub locked_now: bool,
}

/// An account's failed-login state, stored with the account.
///
/// Password failures and second-factor failures are counted apart: a correct password clears
/// only the password count, so someone who knows the password cannot reset the count of
/// wrong authenticator codes by signing in again (one guess per round, forever). Either count
/// reaching `lock_after` locks the account; only a proved second factor (or the end of a
/// lock, or an administrator) clears both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountFailures {
    pub consecutive: u32,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub locked_at: Option<DateTime<Utc>>,
    /// Consecutive failed second factors (TOTP, recovery code, passkey), across sessions.
    pub second_factor: u32,
    pub second_factor_last_at: Option<DateTime<Utc>>,
}

impl AccountFailures {
    /// Count a failed login at `now`. A lock whose `lock_duration` has run out is lifted
    /// first and the count restarts. Failures while locked are still counted.
    pub fn record_failure(&mut self, policy: &LockoutPolicy, now: DateTime<Utc>) -> FailureOutcome {
        if self.locked_at.is_some() && !self.is_locked(policy, now) {
            *self = Self::default();
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.last_failure_at = Some(now);
        let locked_now = self.locked_at.is_none() && self.consecutive >= policy.lock_after;
        if locked_now {
            self.locked_at = Some(now);
        }
        FailureOutcome { delay_before_next: policy.delay_after(self.consecutive), locked_now }
    }

    /// Count a failed second factor at `now`, apart from password failures (see the type's
    /// documentation). A lock whose `lock_duration` has run out is lifted first.
    pub fn record_second_factor_failure(&mut self, policy: &LockoutPolicy, now: DateTime<Utc>) -> FailureOutcome {
        if self.locked_at.is_some() && !self.is_locked(policy, now) {
            *self = Self::default();
        }
        self.second_factor = self.second_factor.saturating_add(1);
        self.second_factor_last_at = Some(now);
        let locked_now = self.locked_at.is_none() && self.second_factor >= policy.lock_after;
        if locked_now {
            self.locked_at = Some(now);
        }
        FailureOutcome { delay_before_next: policy.delay_after(self.second_factor), locked_now }
    }

    /// A correct password: the password count and its delay are cleared, the second-factor
    /// count is kept (it only clears when a second factor is proved). The caller must have
    /// refused the step already if [`AccountFailures::is_locked`].
    pub fn record_password_success(&mut self) {
        if self.locked_at.is_some() {
            // A lock that ran out: everything starts again.
            *self = Self::default();
            return;
        }
        self.consecutive = 0;
        self.last_failure_at = None;
    }

    /// A completed sign-in (second factor proved, or no second factor needed): every count
    /// and delay are cleared. The caller must have refused the login already if
    /// [`AccountFailures::is_locked`].
    pub fn record_success(&mut self) {
        *self = Self::default();
    }

    /// Whether the account is locked at `now`: locked and either no `lock_duration` or less
    /// than that since the lock.
    pub fn is_locked(&self, policy: &LockoutPolicy, now: DateTime<Utc>) -> bool {
        match (self.locked_at, policy.lock_duration) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(at), Some(d)) => at.checked_add_signed(d).is_none_or(|until| now < until),
        }
    }

    /// The earliest time of the next attempt: `None` if nothing holds it back; the end of the
    /// lock if locked for a duration; [`DateTime::<Utc>::MAX_UTC`] (never) if locked until an
    /// administrator unlocks; otherwise the last failure plus the current delay.
    pub fn earliest_next_attempt(&self, policy: &LockoutPolicy) -> Option<DateTime<Utc>> {
        if let Some(at) = self.locked_at {
            return Some(match policy.lock_duration {
                None => DateTime::<Utc>::MAX_UTC,
                Some(d) => at.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC),
            });
        }
        let after = |last: Option<DateTime<Utc>>, count: u32| {
            let last = last?;
            if count == 0 {
                return None;
            }
            Some(last.checked_add_signed(policy.delay_after(count)).unwrap_or(DateTime::<Utc>::MAX_UTC))
        };
        match (after(self.last_failure_at, self.consecutive), after(self.second_factor_last_at, self.second_factor)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// An administrator lifts the lock and clears the count (the caller audits it).
    pub fn admin_unlock(&mut self) {
        *self = Self::default();
    }
}

/// A rate limiter configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("the bucket capacity must be at least 1")]
    Capacity,
    #[error("the refill rate must be a positive finite number of tokens per second")]
    Refill,
    #[error("at least one source must be tracked")]
    MaxSources,
}

/// The key a source is counted under: the IPv4 address, or the /64 network of an IPv6
/// address (one host usually holds a whole /64, so counting single IPv6 addresses would let
/// it spray). IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    V6Net(u64),
}

impl SourceKey {
    fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: DateTime<Utc>,
    /// Position in the recency order.
    seq: u64,
}

/// Per-source token buckets: each source may make `capacity` requests at once and gains
/// `refill_per_second` more each second, up to `capacity`. At most `max_sources` sources are
/// tracked; a new one beyond that evicts the least recently seen, so memory stays bounded
/// when addresses are sprayed (an evicted source starts again with a full bucket, which is
/// what it would have after a quiet spell anyway).
#[derive(Debug, Clone)]
pub struct SourceRateLimiter {
    capacity: f64,
    refill_per_second: f64,
    max_sources: usize,
    buckets: HashMap<SourceKey, Bucket>,
    recency: BTreeMap<u64, SourceKey>,
    next_seq: u64,
}

impl SourceRateLimiter {
    pub fn new(capacity: u32, refill_per_second: f64, max_sources: usize) -> Result<Self, RateLimitError> {
        if capacity == 0 {
            return Err(RateLimitError::Capacity);
        }
        if !refill_per_second.is_finite() || refill_per_second <= 0.0 {
            return Err(RateLimitError::Refill);
        }
        if max_sources == 0 {
            return Err(RateLimitError::MaxSources);
        }
        Ok(Self {
            capacity: f64::from(capacity),
            refill_per_second,
            max_sources,
            buckets: HashMap::new(),
            recency: BTreeMap::new(),
            next_seq: 0,
        })
    }

    /// Take one token for `source` at `now`: true if the request may go ahead.
    pub fn check(&mut self, source: IpAddr, now: DateTime<Utc>) -> bool {
        let key = SourceKey::of(source);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if let Some(bucket) = self.buckets.get_mut(&key) {
            self.recency.remove(&bucket.seq);
            self.recency.insert(seq, key);
            bucket.seq = seq;
            if now > bucket.refilled_at {
                let elapsed = now
                    .signed_duration_since(bucket.refilled_at)
                    .num_microseconds()
                    .map_or(f64::INFINITY, |us| us as f64 / 1_000_000.0);
                bucket.tokens = (bucket.tokens + elapsed * self.refill_per_second).min(self.capacity);
                bucket.refilled_at = now;
            }
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return true;
            }
            return false;
        }
        while self.buckets.len() >= self.max_sources {
            match self.recency.pop_first() {
                Some((_, oldest)) => {
                    self.buckets.remove(&oldest);
                }
                None => break,
            }
        }
        self.buckets.insert(key, Bucket { tokens: self.capacity - 1.0, refilled_at: now, seq });
        self.recency.insert(seq, key);
        true
    }

    /// Sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }

    /// Forget sources whose buckets would be full at `now` (they hold no information).
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let capacity = self.capacity;
        let rate = self.refill_per_second;
        let recency = &mut self.recency;
        self.buckets.retain(|_, b| {
            let elapsed = now
                .signed_duration_since(b.refilled_at)
                .num_microseconds()
                .map_or(f64::INFINITY, |us| us.max(0) as f64 / 1_000_000.0);
            let keep = b.tokens + elapsed * rate < capacity;
            if !keep {
                recency.remove(&b.seq);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn source_keys() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a.into()), SourceKey::of(b.into()));
        assert_ne!(SourceKey::of(a.into()), SourceKey::of(c.into()));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(SourceKey::of(v4.to_ipv6_mapped().into()), SourceKey::of(v4.into()));
    }

    /// A correct password does not clear failed second factors: 10 rounds of right password
    /// and wrong code lock the account.
    #[test]
    fn second_factor_failures_survive_a_correct_password() {
        let p = LockoutPolicy::default();
        let mut now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 0, 0, 0).unwrap();
        let mut a = AccountFailures::default();
        let mut locked = false;
        for round in 1..=p.lock_after {
            now += Duration::seconds(61);
            assert!(!a.is_locked(&p, now), "locked before round {round}");
            a.record_password_success();
            locked |= a.record_second_factor_failure(&p, now).locked_now;
        }
        assert!(locked && a.is_locked(&p, now));
        assert_eq!(a.second_factor, p.lock_after);
        // Throttling counts second-factor failures too.
        let mut b = AccountFailures::default();
        b.record_second_factor_failure(&p, now);
        assert_eq!(b.earliest_next_attempt(&p), Some(now + Duration::seconds(1)));
        b.record_success();
        assert_eq!(b, AccountFailures::default());
    }

    #[test]
    fn delay_saturates_without_overflow() {
        let p = LockoutPolicy {
            lock_after: 100,
            base_delay: Duration::seconds(1),
            max_delay: Duration::hours(1),
            lock_duration: None,
        };
        assert_eq!(p.delay_after(u32::MAX), Duration::hours(1));
        assert_eq!(p.delay_after(0), Duration::zero());
    }
}
