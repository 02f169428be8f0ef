//! Lab time that moves only when nothing in the lab has anything left to do at the present instant.
//!
//! A simulated lab on [`super::Clock::scaled`] turns every wall millisecond the controller spends (a model's fit,
//! the planner, a commit, a round trip over a pseudo-terminal, another process on the machine) into lab time, so
//! the same files and seed give a different run on a busy machine. Here lab time is the sum of the physical
//! durations alone: it stands still while anything *holds* it and, once nothing does, jumps to the earliest time
//! something waits for (an alarm), as a discrete-event simulation does.
//!
//! What holds it:
//! - a [`Hold`], a unit of work in hand: whoever sends a message that will make its receiver act (a step to an
//!   instrument's task, an ask to the learner) creates one and sends it along, and the receiver keeps it until it
//!   waits again;
//! - a *party* (a tokio task that runs a driver or a simulator, [`party`]) while it runs: it keeps the holds it was
//!   handed, and gives them all up when it waits ([`waiting`], or a sleep on the clock); an alarm that wakes it hands
//!   it a new one;
//! - bytes on a simulated serial line that their reader has not read yet ([`Events::wire_sent`]): a command on its
//!   way to its simulator, and a reply on its way to a driver that listens for it. Bytes that reach a driver while
//!   it does not listen (the rest of a reply it gave up on) are counted too and hold lab time once it listens again,
//!   until it reads them: its link reads all that was sent before it writes its next command, so which thread ran
//!   first decides neither what the driver takes for a reply nor when it reads them;
//! - whatever an *idle hook* ([`Events::on_idle`]) says is pending when everything else is idle: the controller's
//!   inbox, so that every fact of an instant is handed over at once, before lab time moves on.
//!
//! Alarms due at the same lab time fire together; lab time never moves backwards. A party whose act would reach
//! another differently as their threads happened to run within one instant (a simulated port closing while its
//! driver writes, a driver reopening a port just as it comes back) waits for the instant's end first
//! ([`super::Clock::after_instant`], an alarm at the present time, which fires only once nothing holds lab time).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// The shared state of a discrete-event clock.
pub(crate) struct Events {
    state: Mutex<State>,
    pub(super) epoch: SystemTime,
}

type Action = Box<dyn FnOnce(Hold) + Send>;

struct State {
    now: f64,
    /// Holds alive, parties' and lines' included.
    busy: usize,
    /// What waits for a lab time, by that time and the order it was set.
    alarms: BTreeMap<(Time, u64), Action>,
    serial: u64,
    hooks: BTreeMap<u64, Hook>,
    wires: HashMap<String, Line>,
}

/// Something that may have work pending when everything else is idle, and how to hand it a hold to do it.
struct Hook {
    pending: Box<dyn Fn() -> bool + Send>,
    wake: Arc<dyn Fn(Hold) + Send + Sync>,
}

/// The bytes on one simulated line that their reader has not read yet.
#[derive(Default)]
struct Line {
    to_simulator: usize,
    /// Whether the simulator waits for its next command: only then do bytes on their way to it hold lab time (one
    /// busy with a command reads the next when it is done, as an instrument does, and may wait on the clock
    /// meanwhile).
    simulator_waits: bool,
    /// Whether bytes to the simulator hold lab time now.
    simulator_held: bool,
    /// Bytes on their way to the driver, a reply or stale bytes sent while it did not listen (the rest of a garbled
    /// reply, a late one), which it reads before its next command.
    to_driver: usize,
    /// Whether the driver listens for a reply: only then do bytes on their way to it hold lab time.
    listening: bool,
    /// Whether bytes to the driver hold lab time now.
    driver_held: bool,
}

/// Which end of a simulated line bytes travel to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// From the driver's link to the simulator.
    Simulator,
    /// From the simulator to the driver's link.
    Driver,
}

/// A total order on lab times.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A unit of work in hand: while one exists, a discrete-event clock's lab time stands still. Dropping it lets time
/// move on; on any other clock it is nothing.
#[must_use = "lab time stands still only while the hold is kept"]
pub struct Hold(Option<Arc<Events>>);

impl Hold {
    /// A hold on `events`, counted by the caller.
    fn new(events: &Arc<Events>) -> Hold {
        Hold(Some(Arc::clone(events)))
    }

    /// A hold that holds nothing (for clocks that are not discrete-event).
    pub fn none() -> Hold {
        Hold(None)
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Hold" } else { "Hold(none)" })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(events) = self.0.take() {
            events.release();
        }
    }
}

/// Removes its alarm when dropped, if it has not fired.
pub struct Alarm {
    events: Arc<Events>,
    key: (Time, u64),
}

impl Drop for Alarm {
    fn drop(&mut self) {
        let removed = self.events.lock().alarms.remove(&self.key);
        // Dropped outside the lock: the action may own a hold.
        drop(removed);
    }
}

/// Removes its idle hook when dropped.
pub struct IdleHook {
    events: Arc<Events>,
    key: u64,
}

impl Drop for IdleHook {
    fn drop(&mut self) {
        let removed = self.events.lock().hooks.remove(&self.key);
        drop(removed);
    }
}

impl Events {
    pub(super) fn new(now: f64, epoch: SystemTime) -> Arc<Self> {
        Arc::new(Events {
            state: Mutex::new(State {
                now,
                busy: 0,
                alarms: BTreeMap::new(),
                serial: 0,
                hooks: BTreeMap::new(),
                wires: HashMap::new(),
            }),
            epoch,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves the counts as they were; they stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn now(&self) -> f64 {
        self.lock().now
    }

    /// What holds lab time now, for a message about a run that does not move.
    pub(super) fn describe(&self) -> String {
        let s = self.lock();
        let lines: Vec<String> = s
            .wires
            .iter()
            .filter(|(_, l)| l.to_simulator > 0 || l.to_driver > 0)
            .map(|(n, l)| format!("{n}: {} bytes to its simulator, {} to its driver", l.to_simulator, l.to_driver))
            .collect();
        format!(
            "lab time {:.3} s, {} holds ({}), {} alarms, the first at {:?}",
            s.now,
            s.busy,
            if lines.is_empty() { "no line".to_owned() } else { lines.join("; ") },
            s.alarms.len(),
            s.alarms.keys().next().map(|k| k.0.0)
        )
    }

    /// A new hold.
    pub(super) fn hold(self: &Arc<Self>) -> Hold {
        self.lock().busy += 1;
        Hold::new(self)
    }

    fn release(self: &Arc<Self>) {
        self.change(|s| {
            s.busy = s.busy.saturating_sub(1);
            true
        });
    }

    /// Changes the state under the lock and, where `change` says a hold may have gone (it returns true), settles;
    /// what settling fired is called outside the lock, since an action may take it again.
    fn change(self: &Arc<Self>, change: impl FnOnce(&mut State) -> bool) {
        let fired = {
            let mut s = self.lock();
            if change(&mut s) { self.settle(&mut s) } else { Vec::new() }
        };
        for fire in fired {
            fire();
        }
    }

    /// If nothing holds lab time: hands a hold to an idle hook with work pending or, if none has, moves lab time to
    /// the earliest alarms and fires them (each with a hold). What to call, outside the lock.
    fn settle(self: &Arc<Self>, s: &mut State) -> Vec<Box<dyn FnOnce() + Send>> {
        if s.busy > 0 {
            return Vec::new();
        }
        if let Some(hook) = s.hooks.values().find(|h| (h.pending)()) {
            s.busy += 1;
            let (wake, hold) = (Arc::clone(&hook.wake), Hold::new(self));
            return vec![Box::new(move || wake(hold))];
        }
        let Some(&(first, _)) = s.alarms.keys().next() else { return Vec::new() };
        s.now = s.now.max(first.0);
        let mut fired: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        while let Some(entry) = s.alarms.first_entry() {
            if entry.key().0 != first {
                break;
            }
            let action = entry.remove();
            s.busy += 1;
            let hold = Hold::new(self);
            fired.push(Box::new(move || action(hold)));
        }
        fired
    }

    /// Calls `action` with a hold once lab time reaches `t` (at once if it has); the alarm is removed if the
    /// returned handle is dropped first.
    pub(super) fn at(self: &Arc<Self>, t: f64, action: impl FnOnce(Hold) + Send + 'static) -> Alarm {
        let (key, fired) = {
            let mut s = self.lock();
            s.serial += 1;
            let key = (Time(t.max(s.now)), s.serial);
            s.alarms.insert(key, Box::new(action));
            (key, self.settle(&mut s))
        };
        for fire in fired {
            fire();
        }
        Alarm { events: Arc::clone(self), key }
    }

    /// Registers a hook asked, whenever nothing holds lab time, whether it has work pending; if so `wake` gets a
    /// hold for it before lab time moves on.
    pub(super) fn on_idle(
        self: &Arc<Self>,
        pending: impl Fn() -> bool + Send + 'static,
        wake: impl Fn(Hold) + Send + Sync + 'static,
    ) -> IdleHook {
        let mut s = self.lock();
        s.serial += 1;
        let key = s.serial;
        s.hooks.insert(key, Hook { pending: Box::new(pending), wake: Arc::new(wake) });
        IdleHook { events: Arc::clone(self), key }
    }

    /// Looks again whether anything is pending or due, for work that arrived from outside the lab (an operator's
    /// request) while nothing held lab time.
    pub(super) fn poke(self: &Arc<Self>) {
        self.change(|_| true);
    }

    /// `n` bytes were written on `line` toward `to`; unread, they hold lab time while their reader waits for them
    /// (a reply only while the driver listens).
    pub(crate) fn wire_sent(&self, line: &str, n: usize, to: Toward) {
        if n == 0 {
            return;
        }
        let mut s = self.lock();
        let l = s.wires.entry(line.to_owned()).or_default();
        let busy = match to {
            Toward::Simulator => {
                l.to_simulator += n;
                let hold = l.simulator_waits && !l.simulator_held;
                l.simulator_held |= hold;
                usize::from(hold)
            }
            Toward::Driver => {
                l.to_driver += n;
                let hold = l.listening && !l.driver_held;
                l.driver_held |= hold;
                usize::from(hold)
            }
        };
        s.busy += busy;
    }

    /// The simulator of `line` waits for its next command (`true`), or stops waiting without reading (`false`):
    /// bytes already on their way hold lab time from now on, or no longer.
    pub(crate) fn wire_simulator_waits(self: &Arc<Self>, line: &str, waits: bool) {
        self.change(|s| {
            let l = s.wires.entry(line.to_owned()).or_default();
            l.simulator_waits = waits;
            reader_waits(&mut s.busy, l.to_simulator, &mut l.simulator_held, waits)
        });
    }

    /// `n` bytes on `line` were read at its `by` end. The simulator, having read, stops waiting, and the hold its
    /// bytes kept passes to it; the driver keeps listening, and the hold passes to it once none is left unread (a
    /// driver that does not listen reads stale bytes, which hold nothing).
    pub(crate) fn wire_read(self: &Arc<Self>, line: &str, n: usize, by: Toward) -> Option<Hold> {
        let mut s = self.lock();
        let l = s.wires.get_mut(line)?;
        match by {
            Toward::Simulator => {
                l.to_simulator = l.to_simulator.saturating_sub(n);
                l.simulator_waits = false;
                std::mem::take(&mut l.simulator_held).then(|| Hold::new(self))
            }
            Toward::Driver => {
                l.to_driver = l.to_driver.saturating_sub(n);
                let passed = l.driver_held && l.to_driver == 0;
                l.driver_held &= !passed;
                passed.then(|| Hold::new(self))
            }
        }
    }

    /// `line` is about to close at its simulator's end: a driver listening for a reply then finds its port gone, and
    /// that discovery holds lab time as a reply's last byte would, until the driver reads past the end
    /// ([`Events::wire_read`] with all of it) or stops listening. Without it lab time could move on between the
    /// hang-up and the driver's waking to it, as far as the driver's own reply timeout on a busy machine.
    pub(crate) fn wire_hung_up(&self, line: &str) {
        let mut s = self.lock();
        let Some(l) = s.wires.get_mut(line).filter(|l| l.listening) else { return };
        l.to_driver += 1;
        let held = usize::from(!l.driver_held);
        l.driver_held = true;
        s.busy += held;
    }

    /// `line` closed at its simulator's end (the port taken away, or a write that failed): what was on its way to
    /// the simulator is gone and holds nothing, and so is what a driver that does not listen had not read (the
    /// hang-up discards it). What was on its way to a listening driver still holds lab time until the driver reads
    /// it or finds the port gone ([`Events::wire_read`] with all of it).
    pub(crate) fn wire_closed(self: &Arc<Self>, line: &str) {
        self.change(|s| {
            let Some(l) = s.wires.get_mut(line) else { return false };
            let held = usize::from(l.simulator_held);
            (l.to_simulator, l.simulator_held, l.simulator_waits) = (0, false, false);
            if !l.driver_held {
                l.to_driver = 0;
            }
            s.busy = s.busy.saturating_sub(held);
            held > 0
        });
    }

    /// The driver listens on `line` for replies, or stops. Bytes it has not read hold lab time while it listens
    /// (stale bytes sent while it did not included, until it reads them before its command), and nothing otherwise.
    pub(crate) fn wire_listening(self: &Arc<Self>, line: &str, on: bool) {
        self.change(|s| {
            let l = s.wires.entry(line.to_owned()).or_default();
            l.listening = on;
            reader_waits(&mut s.busy, l.to_driver, &mut l.driver_held, on)
        });
    }

    /// How many bytes are on their way to the driver of `line`, sent and not read yet.
    pub(crate) fn wire_unread(&self, line: &str) -> usize {
        self.lock().wires.get(line).map_or(0, |l| l.to_driver)
    }
}

/// The reader of `unread` bytes on a line waits for them (`waits`) or no longer: they hold lab time from now on (one
/// hold, `held`, counted in `busy`), or no longer. Whether a hold went, for settling.
fn reader_waits(busy: &mut usize, unread: usize, held: &mut bool, waits: bool) -> bool {
    if waits && unread > 0 && !*held {
        *held = true;
        *busy += 1;
        false
    } else if !waits && *held {
        *held = false;
        *busy = busy.saturating_sub(1);
        true
    } else {
        false
    }
}

tokio::task_local! {
    /// The holds of the party (a task running a driver or a simulator) this task is, if it is one.
    static PARTY: RefCell<Vec<Hold>>;
}

/// Runs `work` as a party keeping `holds` (see the module's documentation).
pub fn party<F: std::future::Future>(holds: Vec<Hold>, work: F) -> impl std::future::Future<Output = F::Output> {
    PARTY.scope(RefCell::new(holds), work)
}

/// Gives `hold` to the party this task is; outside a party it is dropped.
pub fn adopt(hold: Hold) {
    let _ = PARTY.try_with(move |p| p.borrow_mut().push(hold));
}

/// The party this task is gives up its holds: it waits.
pub(crate) fn release_party() {
    let held = PARTY.try_with(|p| std::mem::take(&mut *p.borrow_mut())).unwrap_or_default();
    drop(held);
}

/// Awaits `what` (a message, a reply) as a wait: the party this task is gives up its holds first.
pub async fn waiting<F: std::future::Future>(what: F) -> F::Output {
    release_party();
    what.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_moves_to_the_earliest_alarm_only_when_nothing_holds_it() {
        let events = Events::new(0.0, SystemTime::now());
        let hold = events.hold();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = |at: &'static str| {
            let fired = Arc::clone(&fired);
            move |h: Hold| {
                fired.lock().unwrap().push(at);
                drop(h);
            }
        };
        let _a = events.at(10.0, log("ten"));
        let _b = events.at(5.0, log("five"));
        assert_eq!(events.now(), 0.0, "held: no alarm fires");
        drop(hold);
        assert_eq!(*fired.lock().unwrap(), ["five", "ten"]);
        assert_eq!(events.now(), 10.0);
    }

    #[test]
    fn bytes_unread_hold_time_and_pass_their_hold_to_the_reader() {
        let events = Events::new(0.0, SystemTime::now());
        let hold = events.hold();
        let _alarm = events.at(1.0, drop);
        events.wire_simulator_waits("pump", true);
        events.wire_sent("pump", 4, Toward::Simulator);
        drop(hold);
        assert_eq!(events.now(), 0.0, "four bytes on their way to a waiting simulator");
        let passed = events.wire_read("pump", 3, Toward::Simulator).expect("reading passes the hold");
        assert_eq!(events.now(), 0.0);
        drop(passed);
        assert_eq!(events.now(), 1.0, "the simulator busy with its command lets time move");
        events.wire_simulator_waits("pump", true);
        let _next = events.at(2.0, drop);
        assert_eq!(events.now(), 1.0, "the byte left holds time once the simulator waits again");
        events.wire_simulator_waits("pump", false);
        assert_eq!(events.now(), 2.0);
        events.wire_listening("pump", true);
        let hold = events.hold();
        let _later = events.at(3.0, drop);
        events.wire_sent("pump", 4, Toward::Driver);
        drop(hold);
        assert_eq!(events.now(), 2.0, "a reply on its way to a listening driver");
        assert!(events.wire_read("pump", 3, Toward::Driver).is_none());
        let passed = events.wire_read("pump", 1, Toward::Driver).expect("the last byte passes the hold");
        drop(passed);
        assert_eq!(events.now(), 3.0);
        events.wire_listening("pump", false);
        events.wire_sent("pump", 4, Toward::Driver);
        let _last = events.at(4.0, drop);
        assert_eq!(events.now(), 4.0, "a reply nobody listens for holds nothing");
    }

    /// Bytes sent while the driver does not listen (the rest of a reply it gave up on) hold nothing then, and hold
    /// lab time from when it listens again until it has read them, so that when it reads them does not depend on
    /// which thread runs first (soak seed 346 read them at 1.0 or at 1.034 lab s). Before, they were not counted at
    /// all.
    #[test]
    fn stale_bytes_hold_time_once_the_driver_listens_again_until_it_reads_them() {
        let events = Events::new(0.0, SystemTime::now());
        events.wire_listening("balance", true);
        let hold = events.hold();
        events.wire_sent("balance", 10, Toward::Driver);
        assert!(events.wire_read("balance", 4, Toward::Driver).is_none(), "six bytes of the reply still to come");
        events.wire_listening("balance", false);
        let _retry = events.at(0.5, drop);
        drop(hold);
        assert_eq!(events.now(), 0.5, "the rest of a reply nobody listens for holds nothing");
        assert_eq!(events.wire_unread("balance"), 6, "but it is counted");
        let hold = events.hold();
        events.wire_listening("balance", true);
        let _later = events.at(1.0, drop);
        drop(hold);
        assert_eq!(events.now(), 0.5, "stale bytes hold time once the driver listens again");
        let passed = events.wire_read("balance", 6, Toward::Driver).expect("reading the last passes the hold");
        assert_eq!(events.wire_unread("balance"), 0);
        drop(passed);
        assert_eq!(events.now(), 1.0);
        events.wire_listening("balance", false);
        events.wire_sent("balance", 3, Toward::Driver);
        events.wire_closed("balance");
        assert_eq!(events.wire_unread("balance"), 0, "a hang-up discards what a driver not listening had not read");
    }

    #[test]
    fn a_hang_up_holds_time_until_the_listening_driver_finds_its_port_gone() {
        let events = Events::new(0.0, SystemTime::now());
        events.wire_listening("pump", true);
        let hold = events.hold();
        let _timeout = events.at(1.0, drop);
        events.wire_hung_up("pump");
        events.wire_closed("pump");
        drop(hold);
        assert_eq!(events.now(), 0.0, "the driver has not yet found its port gone");
        let passed = events.wire_read("pump", usize::MAX, Toward::Driver).expect("finding it gone passes the hold");
        assert_eq!(events.now(), 0.0);
        drop(passed);
        assert_eq!(events.now(), 1.0);
        events.wire_listening("pump", false);
        events.wire_hung_up("pump");
        let _later = events.at(2.0, drop);
        assert_eq!(events.now(), 2.0, "a hang-up nobody listens on holds nothing");
    }

    #[test]
    fn an_idle_hook_with_work_is_woken_before_time_moves_on() {
        let events = Events::new(0.0, SystemTime::now());
        let hold = events.hold();
        let inbox = Arc::new(Mutex::new(1usize));
        let woken = Arc::new(Mutex::new(None));
        let _hook = events.on_idle(
            {
                let inbox = Arc::clone(&inbox);
                move || *inbox.lock().unwrap() > 0
            },
            {
                let woken = Arc::clone(&woken);
                move |h| *woken.lock().unwrap() = Some(h)
            },
        );
        let _alarm = events.at(3.0, drop);
        drop(hold);
        assert_eq!(events.now(), 0.0);
        *inbox.lock().unwrap() = 0;
        let taken = woken.lock().unwrap().take();
        drop(taken);
        assert_eq!(events.now(), 3.0);
    }
}
