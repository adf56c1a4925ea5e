//! [`ModelGate`]: at most `llm.max_concurrent_calls` model calls in flight per process, with fair
//! queueing across chats (issue 8 item 12: 178 calls ran at once under load).
//!
//! A plain FIFO semaphore lets one chat with many queued calls (a routine fan-out, a flood of
//! DMs from one user's chat, a long multi-step turn) hold every later chat behind all of its
//! calls. Here waiters queue per chat, and a freed permit goes to the next chat in round-robin
//! order: a chat with 50 waiting calls delays another chat's single call by at most one call
//! per permit. Cancellation-safe: a waiter that gives up (turn timeout) never leaks a permit.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// A process-wide limit on concurrent model calls with a per-chat round-robin queue in front.
#[derive(Clone)]
pub struct ModelGate {
    inner: Arc<Mutex<State>>,
}

struct State {
    /// Permits not held by anyone.
    free: usize,
    /// Chats with waiters, in the order they get the next permit.
    ring: VecDeque<i64>,
    /// Waiters per chat, oldest first.
    waiters: HashMap<i64, VecDeque<oneshot::Sender<GatePermit>>>,
}

/// One model call's right to run; the permit returns to the gate when dropped.
pub struct GatePermit {
    gate: Option<Arc<Mutex<State>>>,
}

impl ModelGate {
    /// A gate letting `limit` calls (at least 1) run at once.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                free: limit.max(1),
                ring: VecDeque::new(),
                waiters: HashMap::new(),
            })),
        }
    }

    /// Wait for a permit for a call made for `chat_id`. Free permits go at once when nobody is
    /// queued; otherwise the caller queues behind its own chat's earlier calls, and chats take
    /// turns.
    pub async fn acquire(&self, chat_id: i64) -> GatePermit {
        let rx = {
            let mut guard = lock(&self.inner);
            let st = &mut *guard;
            if st.free > 0 && st.ring.is_empty() {
                st.free -= 1;
                return GatePermit {
                    gate: Some(self.inner.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let q = st.waiters.entry(chat_id).or_default();
            if q.is_empty() {
                st.ring.push_back(chat_id);
            }
            q.push_back(tx);
            rx
        };
        match rx.await {
            Ok(p) => p,
            // unreachable in practice (senders are only dropped when handing a permit over);
            // never block forever: take a fresh permit slot instead
            Err(_) => GatePermit {
                gate: Some(self.inner.clone()),
            },
        }
    }

    /// Calls waiting for a permit (all chats).
    pub fn queued(&self) -> usize {
        lock(&self.inner).waiters.values().map(VecDeque::len).sum()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        let Some(gate) = self.gate.take() else {
            return;
        };
        let mut guard = lock(&gate);
        let st = &mut *guard;
        // hand the permit to the next chat's oldest live waiter
        while let Some(chat) = st.ring.pop_front() {
            let Some(q) = st.waiters.get_mut(&chat) else {
                continue;
            };
            let mut handed = false;
            while let Some(tx) = q.pop_front() {
                if tx.is_closed() {
                    continue; // that waiter gave up
                }
                let permit = GatePermit {
                    gate: Some(gate.clone()),
                };
                match tx.send(permit) {
                    Ok(()) => {
                        handed = true;
                        break;
                    }
                    Err(mut p) => {
                        // receiver went away between the check and the send: not a real hand-over
                        p.gate = None;
                    }
                }
            }
            if q.is_empty() {
                st.waiters.remove(&chat);
            } else {
                st.ring.push_back(chat);
            }
            if handed {
                return;
            }
        }
        st.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chats_take_turns() {
        let gate = ModelGate::new(1);
        let held = gate.acquire(1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = g.acquire(1).await;
                o.lock().unwrap().push(format!("a{i}"));
            }));
            tokio::task::yield_now().await;
        }
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = g.acquire(2).await;
            o.lock().unwrap().push("b".to_string());
        }));
        while gate.queued() < 6 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let b = order.iter().position(|x| x == "b").unwrap();
        assert!(b <= 1, "chat 2 waited behind chat 1's queue: {order:?}");
        assert_eq!(order.len(), 6);
    }

    #[tokio::test]
    async fn an_abandoned_wait_does_not_leak_the_permit() {
        let gate = ModelGate::new(1);
        let held = gate.acquire(1).await;
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.acquire(2).await });
        while gate.queued() < 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        // the permit came back: a new caller gets it at once
        let p = tokio::time::timeout(std::time::Duration::from_secs(1), gate.acquire(3)).await;
        assert!(p.is_ok());
    }
}
