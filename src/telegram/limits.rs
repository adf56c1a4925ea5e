//! Telegram's send limits and 429 back-off, per chat.
//!
//! Every sendMessage, sendPhoto and edit waits for, in order: the chat's own `retry_after` block
//! (set when Telegram answered 429 for that chat), the group pace (groups and supergroups only:
//! `telegram.limit_per_group_per_minute`, burst `telegram.limit_group_burst`), the chat pace
//! (`telegram.limit_per_chat_per_second`) and the bot-wide pace (`telegram.limit_per_second`).
//! Limits come from config; the defaults are Telegram's documented ones
//! (<https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>): 30 messages
//! a second overall, about one a second per chat, 20 a minute per group, and no per-minute cap in
//! private chats. A chat waiting out a 429 never holds up another chat (teloxide's `Throttle`
//! paused every chat and retried forever).
//!
//! The paces are GCRA limiters from `governor` (keyed by chat id); a keyed limiter forgets chats
//! that have been idle for a full period (`retain_recent`, run every [`PRUNE_EVERY`] checks, which
//! also drops lapsed 429 blocks).
//!
//! With several processes on one database (issue 12), the bot-wide limit is DIVIDED, not
//! shared: each process paces its own sends at `floor(telegram.limit_per_second / live
//! processes)` a second (at least 1; [`Limits::divide`], called by the wiring every
//! `runtime.heartbeat` with the processes that beat within `cluster.lease`). A shared budget
//! would need a round trip to the database (or a coordinator) per message; dividing needs one
//! count per heartbeat, and the sum of the shares never exceeds the limit. The cost: a process
//! idle while another is busy leaves its share unused, and when a replica dies its share returns
//! to the others only once its last beat is older than `cluster.lease` (until then the survivors
//! send at the smaller share). The per-chat and per-group paces stay per process: only the
//! holder of a chat's lease runs that chat's turns and sends their replies.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use governor::{clock::Clock, DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use tokio::time::Instant;

use crate::config::TelegramConfig;

/// Keyed limiters drop idle chats after this many checks.
const PRUNE_EVERY: u64 = 1024;

/// The send limits of one bot (share one per token).
pub struct Limits {
    /// The bot-wide pace at this process's share; replaced when the share changes (a direct
    /// limiter cannot change its quota).
    global: RwLock<Arc<DefaultDirectRateLimiter>>,
    /// `telegram.limit_per_second`: the whole bot's budget, messages a second.
    limit: u32,
    /// This process's share of it, messages a second ([`Limits::divide`]).
    share: AtomicU32,
    chat: DefaultKeyedRateLimiter<i64>,
    group: DefaultKeyedRateLimiter<i64>,
    /// Chat id → until when Telegram told us (429 `retry_after`) to leave that chat alone.
    blocked: Mutex<HashMap<i64, Instant>>,
    checks: AtomicU64,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// A quota of `n` per `per`, strictly paced (burst `burst`).
fn paced(n: u32, per: Duration, burst: u32) -> Quota {
    let period = (per / n.max(1)).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(nz(burst))
}

/// True for group and supergroup chat ids (Telegram: negative ids; private chats are positive).
pub fn is_group(chat_id: i64) -> bool {
    chat_id < 0
}

impl Limits {
    /// Limits from the `[telegram]` config section (zero values are treated as 1).
    pub fn new(cfg: &TelegramConfig) -> Self {
        let sec = Duration::from_secs(1);
        Self {
            global: RwLock::new(Arc::new(DefaultDirectRateLimiter::direct(paced(
                cfg.limit_per_second,
                sec,
                1,
            )))),
            limit: cfg.limit_per_second.max(1),
            share: AtomicU32::new(cfg.limit_per_second.max(1)),
            chat: DefaultKeyedRateLimiter::dashmap(paced(cfg.limit_per_chat_per_second, sec, 1)),
            group: DefaultKeyedRateLimiter::dashmap(paced(
                cfg.limit_per_group_per_minute,
                Duration::from_secs(60),
                cfg.limit_group_burst,
            )),
            blocked: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }

    /// Pace this process's bot-wide sends at its share of `telegram.limit_per_second` when
    /// `processes` processes (this one included; 0 counts as 1) send for the bot:
    /// `max(1, limit / processes)` messages a second, rounded down. The limiter is replaced only
    /// when the share changes (its state starts afresh then: at most one message more that
    /// second). Returns the share.
    pub fn divide(&self, processes: u64) -> u32 {
        let n = u32::try_from(processes.max(1)).unwrap_or(u32::MAX);
        let share = (self.limit / n).max(1);
        if self.share.swap(share, Ordering::SeqCst) != share {
            let fresh = Arc::new(DefaultDirectRateLimiter::direct(paced(
                share,
                Duration::from_secs(1),
                1,
            )));
            *self.global.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        share
    }

    /// This process's bot-wide pace, messages a second (`telegram.limit_per_second` until
    /// [`Limits::divide`] divides it).
    pub fn per_second(&self) -> u32 {
        self.share.load(Ordering::SeqCst)
    }

    /// How long `chat_id` must still wait because of a 429 (zero when it may send).
    pub fn blocked_for(&self, chat_id: i64) -> Duration {
        let mut map = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get(&chat_id) {
            Some(until) if *until > now => *until - now,
            Some(_) => {
                map.remove(&chat_id);
                Duration::ZERO
            }
            None => Duration::ZERO,
        }
    }

    /// Telegram answered 429 for `chat_id`: nothing goes to that chat for `wait`.
    pub fn block(&self, chat_id: i64, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(chat_id).or_insert(until);
        *e = (*e).max(until);
    }

    /// Wait until one message may go to `chat_id` under every pace that applies, and take it.
    /// The group pace is taken first and the bot-wide one last, so a chat waiting on its own
    /// pace does not hold a bot-wide slot.
    pub async fn acquire(&self, chat_id: i64) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.chat.retain_recent();
            self.group.retain_recent();
            let now = Instant::now();
            self.blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, until| *until > now);
        }
        if is_group(chat_id) {
            while let Err(n) = self.group.check_key(&chat_id) {
                tokio::time::sleep(n.wait_time_from(self.group.clock().now())).await;
            }
        }
        while let Err(n) = self.chat.check_key(&chat_id) {
            tokio::time::sleep(n.wait_time_from(self.chat.clock().now())).await;
        }
        loop {
            let global = self
                .global
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match global.check() {
                Ok(()) => break,
                Err(n) => tokio::time::sleep(n.wait_time_from(global.clock().now())).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_chat: u32, group_per_min: u32) -> TelegramConfig {
        let mut c = crate::config::Config::load(None, Vec::<(String, String)>::new())
            .expect("defaults")
            .telegram;
        c.limit_per_chat_per_second = per_chat;
        c.limit_per_group_per_minute = group_per_min;
        c.limit_per_second = 1000;
        c
    }

    #[tokio::test]
    async fn a_private_chat_is_paced_per_second_only_and_a_group_per_minute() {
        // 20/s per chat; groups 600/min = one per 100 ms
        let l = Limits::new(&cfg(20, 600));
        let t = std::time::Instant::now();
        for _ in 0..5 {
            l.acquire(7).await;
        }
        let dm = t.elapsed();
        assert!(dm >= Duration::from_millis(190), "{dm:?}");
        assert!(dm < Duration::from_millis(380), "{dm:?}");
        let t = std::time::Instant::now();
        for _ in 0..5 {
            l.acquire(-7).await;
        }
        let group = t.elapsed();
        assert!(group >= Duration::from_millis(390), "{group:?}");
    }

    /// How long the next bot-wide message waits right after one was sent (no sleeping).
    fn next_global_wait(l: &Limits) -> Duration {
        let g = l.global.read().unwrap().clone();
        assert!(g.check().is_ok(), "a fresh pace lets one message through");
        g.check()
            .expect_err("the second one waits")
            .wait_time_from(g.clock().now())
    }

    #[test]
    fn the_bot_wide_pace_is_divided_among_live_processes() {
        let mut c = cfg(1000, 60_000);
        c.limit_per_second = 30;
        let l = Limits::new(&c);
        assert_eq!(l.per_second(), 30, "alone: the whole limit");
        let alone = next_global_wait(&l);
        assert!(alone <= Duration::from_micros(33_334), "{alone:?}");
        // shares round down, never below one a second; 0 processes counts as this one
        assert_eq!([3, 4, 7, 40, 0].map(|n| l.divide(n)), [10, 7, 4, 1, 30]);
        assert_eq!(l.divide(2), 15);
        assert_eq!(l.per_second(), 15);
        // the limiter in use paces at the share: 1/15 s between two messages, not 1/30 s
        let halved = next_global_wait(&l);
        assert!(
            halved > Duration::from_millis(40) && halved <= Duration::from_micros(66_667),
            "{halved:?}"
        );
        // the same share again keeps the limiter (and its state)
        let before = l.global.read().unwrap().clone();
        assert_eq!(l.divide(2), 15);
        assert!(
            Arc::ptr_eq(&before, &l.global.read().unwrap()),
            "not replaced by an unchanged share"
        );
        // a replica gone: the share comes back
        assert_eq!(l.divide(1), 30);
        let back = next_global_wait(&l);
        assert!(back <= Duration::from_micros(33_334), "{back:?}");
    }

    #[tokio::test]
    async fn acquire_paces_at_the_divided_rate() {
        // 40/s divided by 2 = 20/s: 6 messages to 6 chats take at least 5 × 50 ms
        let mut c = cfg(1000, 60_000);
        c.limit_per_second = 40;
        let l = Limits::new(&c);
        l.divide(2);
        let t = std::time::Instant::now();
        for chat in 1..=6 {
            l.acquire(chat).await;
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(240), "{took:?}");
    }

    #[test]
    fn a_block_lasts_for_its_chat_only() {
        let l = Limits::new(&cfg(1, 20));
        l.block(1, Duration::from_secs(30));
        assert!(l.blocked_for(1) > Duration::from_secs(29));
        assert_eq!(l.blocked_for(2), Duration::ZERO);
        l.block(1, Duration::from_secs(1)); // a shorter block never shortens the longer one
        assert!(l.blocked_for(1) > Duration::from_secs(29));
    }
}
