//! The event bus: every step of a search is published here, numbered, and delivered in order to
//! each subscriber's mailbox. The progress display, the run log and the daemon's stream are
//! subscribers; a new actor joins by sending [`Subscribe`] with its `Recipient<EventMsg>`.

use crate::messages::{EventMsg, Flush, Publish, Subscribe};
use actix::prelude::*;

/// Fans events out to subscribers.
#[derive(Default)]
pub struct EventBus {
    seq: u64,
    subscribers: Vec<Recipient<EventMsg>>,
}

impl EventBus {
    /// A bus whose numbering continues after `seq` (a resumed search).
    pub fn starting_at(seq: u64) -> EventBus {
        EventBus {
            seq,
            subscribers: Vec::new(),
        }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

impl Handler<Subscribe> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<Publish> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.seq += 1;
        let m = EventMsg {
            seq: self.seq,
            event: msg.0,
        };
        // A subscriber that went away is dropped rather than failing the search. `do_send`
        // ignores the mailbox capacity: a busy subscriber (a database writer) gets every
        // event late rather than missing some, as `try_send` on a full mailbox would.
        self.subscribers.retain(|s| {
            if s.connected() {
                s.do_send(m.clone());
                true
            } else {
                false
            }
        });
    }
}

impl Handler<Flush> for EventBus {
    type Result = u64;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> u64 {
        self.seq
    }
}
