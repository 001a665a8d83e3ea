//! The daemon's queue of work for the loading pool, with events ahead of the sysfs scan.
//!
//! At coldplug the scan hands over every device present at once, and the pool works through
//! them for seconds. Meanwhile the drivers it loads bring up buses, and the devices found
//! there arrive as events: a USB disk behind the controller just bound, the SCSI disk behind
//! that. Those are the long chain that coldplug waits for (usb-storage alone waits a second
//! before it scans), while what is left of the scan are devices with nothing behind them. So
//! an event goes before every scanned device still waiting, and the chain's waits overlap
//! the scan's work instead of following it. Among themselves, each kind stays in order.
//!
//! The queue also says which work nothing waits behind (scanned devices that are not
//! controllers), so that the pool can run it at a lower priority (see `super::priority`).

use super::Work;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// Where a piece of work came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A uevent from the kernel.
    Event,
    /// The sysfs scan (coldplug, or after lost events) found a controller that brings up a
    /// bus: the devices behind it come as events once its driver is loaded.
    ScannedController,
    /// The sysfs scan found any other device.
    Scanned,
}

impl Origin {
    /// Whether nothing waits behind this work: the pool may run it at a lower priority.
    pub fn is_background(self) -> bool {
        self == Origin::Scanned
    }
}

#[derive(Default)]
struct Queues {
    events: VecDeque<Work>,
    scan: VecDeque<(Work, Origin)>,
    closed: bool,
}

/// A blocking queue shared by the listener (one producer) and the pool's threads.
#[derive(Default)]
pub struct WorkQueue {
    queues: Mutex<Queues>,
    changed: Condvar,
}

impl WorkQueue {
    pub fn push(&self, work: Work, origin: Origin) {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        match origin {
            Origin::Event => q.events.push_back(work),
            scanned => q.scan.push_back((work, scanned)),
        }
        drop(q);
        self.changed.notify_one();
    }

    /// The next piece of work and where it came from, waiting for one; None once the queue
    /// is closed and empty.
    pub fn pop(&self) -> Option<(Work, Origin)> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let next = q.events.pop_front().map(|w| (w, Origin::Event));
            if let Some(w) = next.or_else(|| q.scan.pop_front()) {
                return Some(w);
            }
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more work will come: the pool finishes what is queued, then [`WorkQueue::pop`] says
    /// so.
    pub fn close(&self) {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.changed.notify_all();
    }
}

/// Closes the queue when dropped, so that the pool ends however the producer stops (an
/// error return included) instead of waiting for work forever.
pub struct CloseOnDrop<'q>(pub &'q WorkQueue);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(tag: &str) -> Work {
        Work {
            unresolved: vec![tag.to_owned()],
            ..Default::default()
        }
    }

    fn tag(w: Option<(Work, Origin)>) -> String {
        w.map(|(w, _)| w.unresolved[0].clone()).unwrap_or_default()
    }

    #[test]
    fn events_go_before_the_scan_and_each_kind_keeps_its_order() {
        let q = WorkQueue::default();
        q.push(work("controller"), Origin::ScannedController);
        q.push(work("scan 1"), Origin::Scanned);
        q.push(work("scan 2"), Origin::Scanned);
        q.push(work("event 1"), Origin::Event);
        q.push(work("event 2"), Origin::Event);
        q.close();
        let popped: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|(w, origin)| (w.unresolved[0].clone(), origin.is_background()))
            .collect();
        let expected = [
            ("event 1", false),
            ("event 2", false),
            ("controller", false),
            ("scan 1", true),
            ("scan 2", true),
        ];
        assert_eq!(popped, expected.map(|(t, b)| (t.to_owned(), b)));
        assert!(q.pop().is_none());
    }

    #[test]
    fn a_waiting_thread_gets_work_pushed_later_and_ends_on_close() {
        let q = WorkQueue::default();
        std::thread::scope(|s| {
            let t = s.spawn(|| (tag(q.pop()), q.pop().is_none()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            q.push(work("late"), Origin::Event);
            std::thread::sleep(std::time::Duration::from_millis(50));
            q.close();
            assert_eq!(t.join().unwrap(), ("late".to_owned(), true));
        });
    }
}
