//! Lab time, injected.
//!
//! Physical processes (a plate heating, a plunger travelling, a hold of 30 minutes) run on lab time; the bytes on a
//! serial line do not. A [`Clock`] maps between the two: [`Clock::real`] is wall time, [`Clock::scaled`] runs lab
//! time faster than the wall by a factor (a simulated campaign of five lab hours in half a minute), and
//! [`Clock::manual`] only moves when a test advances it, and [`Clock::stepping`] jumps to the end of every wait at
//! once (for replaying a recorded session, where every reply is already known), and [`Clock::discrete`] moves
//! only when nothing in the lab has anything left to do at the present instant ([`events`]): a simulated lab whose
//! simulators run in this process, whose lab time is then the sum of its physical durations and so depends on the
//! files and seeds alone, not on how fast the machine computes. The controller, the drivers and the simulators share
//! one clock, so a simulated plate reaches its set point after the same lab time the driver waits for.
//!
//! Communication timeouts are deliberately *not* on the scaled clocks: a reply that does not come within 1 s of wall
//! time is missing, however fast lab time runs. A discrete-event clock stands for the real lab it simulates, at one
//! lab second per second: a simulator answers in no lab time at all, and a timeout (or any other wall-time delay of
//! a simulated instrument: its latency, a port away, a reconnection's backoff; the link's reply timeouts,
//! [`Clock::wall_wait`]) lasts its own duration in lab time, as it would on the real line. A lost reply then costs
//! what it costs a real lab (its timeout, about a second, and the command asked again), not the hundreds of lab
//! seconds a second of wall time is worth on a clock paced at the lab's time scale, which would make one lost byte
//! a quarter of a simulated run that a real lab would not notice. Drivers that size a setting by the clock's speed
//! ([`Clock::scale`], 1 here) size it as for the real lab too.

pub mod events;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub(crate) use events::Events;
pub use events::{Alarm, Hold, IdleHook, Toward, adopt, party, waiting};
use tokio::sync::watch;

/// A source of lab time, cheap to clone and shared by everything in one lab.
#[derive(Clone)]
pub struct Clock(Arc<Inner>);

enum Inner {
    Scaled { start: Instant, epoch: SystemTime, scale: f64, offset: f64 },
    Manual { now: Mutex<f64>, tick: watch::Sender<f64>, epoch: SystemTime },
    Stepping { now: Mutex<f64>, epoch: SystemTime, scale: f64 },
    Discrete(Arc<Events>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Inner::Scaled { scale, .. } => write!(f, "Clock(scaled {scale}x, now {:.3} s)", self.now()),
            Inner::Manual { .. } => write!(f, "Clock(manual, now {:.3} s)", self.now()),
            Inner::Stepping { scale, .. } => write!(f, "Clock(stepping as {scale}x, now {:.3} s)", self.now()),
            Inner::Discrete(e) => write!(f, "Clock(discrete, {})", e.describe()),
        }
    }
}

impl Clock {
    /// Wall time: one lab second per second.
    pub fn real() -> Self {
        Self::scaled(1.0)
    }

    /// Lab time running `scale` times faster than wall time.
    ///
    /// # Panics
    /// If `scale` is not a positive finite number; callers validate it from the lab file first.
    pub fn scaled(scale: f64) -> Self {
        assert!(scale.is_finite() && scale > 0.0, "time scale must be positive, got {scale}");
        Clock(Arc::new(Inner::Scaled { start: Instant::now(), epoch: SystemTime::now(), scale, offset: 0.0 }))
    }

    /// Lab time of a campaign that began at the wall-clock time `epoch`, at lab time `now`, running `scale` times
    /// faster than the wall from here: a campaign resumed after a crash continues its own lab time.
    pub fn scaled_from(now: f64, epoch: SystemTime, scale: f64) -> Self {
        assert!(scale.is_finite() && scale > 0.0, "time scale must be positive, got {scale}");
        Clock(Arc::new(Inner::Scaled { start: Instant::now(), epoch, scale, offset: now }))
    }

    /// A clock that stands still until [`Clock::advance`] moves it; for deterministic tests.
    pub fn manual() -> Self {
        let (tick, _) = watch::channel(0.0);
        Clock(Arc::new(Inner::Manual { now: Mutex::new(0.0), tick, epoch: SystemTime::now() }))
    }

    /// A clock that jumps to the end of every wait at once, so lab time passes exactly as the waits ask and no
    /// faster; it reports `scale` as its speed, so a driver that sizes its settings by the clock's speed behaves as
    /// it did on the clock of the session being replayed.
    ///
    /// # Panics
    /// If `scale` is not a positive number.
    pub fn stepping(scale: f64) -> Self {
        assert!(scale > 0.0, "time scale must be positive, got {scale}");
        Clock(Arc::new(Inner::Stepping { now: Mutex::new(0.0), epoch: SystemTime::now(), scale }))
    }

    /// Lab time that moves only when nothing in the lab has anything left to do at the present instant (see
    /// [`events`]), starting at zero. A simulated instrument's own wall-time delays (a timeout, a latency) last their
    /// duration in lab time, as on the real lab, and drivers that size their settings by the clock's speed see one
    /// lab second per second (the module's documentation says why).
    pub fn discrete() -> Self {
        Self::discrete_from(0.0, SystemTime::now())
    }

    /// A discrete-event clock that starts at lab time `now` of a campaign that began at `epoch` (a campaign
    /// resumed after a crash).
    pub fn discrete_from(now: f64, epoch: SystemTime) -> Self {
        Clock(Arc::new(Inner::Discrete(Events::new(now, epoch))))
    }

    /// Whether this is a discrete-event clock, on which wall time means nothing for the lab.
    pub fn is_discrete(&self) -> bool {
        matches!(&*self.0, Inner::Discrete(_))
    }

    /// Lab seconds since the clock started.
    pub fn now(&self) -> f64 {
        match &*self.0 {
            Inner::Scaled { start, scale, offset, .. } => offset + start.elapsed().as_secs_f64() * scale,
            Inner::Manual { now, .. } | Inner::Stepping { now, .. } => *now.lock().expect("clock lock"),
            Inner::Discrete(e) => e.now(),
        }
    }

    /// How many lab seconds pass per wall second: on a discrete-event clock, which stands for the real lab, one.
    pub fn scale(&self) -> f64 {
        match &*self.0 {
            Inner::Scaled { scale, .. } | Inner::Stepping { scale, .. } => *scale,
            Inner::Discrete(_) => 1.0,
            Inner::Manual { .. } => f64::INFINITY,
        }
    }

    /// The wall-clock time at which lab time was zero; recorded so lab times can be read as dates.
    pub fn epoch(&self) -> SystemTime {
        match &*self.0 {
            Inner::Scaled { epoch, .. } | Inner::Manual { epoch, .. } | Inner::Stepping { epoch, .. } => *epoch,
            Inner::Discrete(e) => e.epoch,
        }
    }

    /// The wall duration that `lab_seconds` of lab time take.
    pub fn wall(&self, lab_seconds: f64) -> std::time::Duration {
        match &*self.0 {
            Inner::Scaled { scale, .. } | Inner::Stepping { scale, .. } => {
                std::time::Duration::from_secs_f64((lab_seconds / scale).max(0.0))
            }
            Inner::Discrete(_) => std::time::Duration::from_secs_f64(lab_seconds.max(0.0)),
            Inner::Manual { .. } => std::time::Duration::ZERO,
        }
    }

    /// A unit of work in hand, which keeps a discrete-event clock's lab time still while it lives; nothing on other
    /// clocks.
    pub fn hold(&self) -> Hold {
        match &*self.0 {
            Inner::Discrete(e) => e.hold(),
            _ => Hold::none(),
        }
    }

    /// Calls `action` with a hold once a discrete-event clock reaches lab time `t`, unless the returned alarm is
    /// dropped first; `None` on other clocks, whose time moves by itself.
    pub fn alarm(&self, t: f64, action: impl FnOnce(Hold) + Send + 'static) -> Option<Alarm> {
        match &*self.0 {
            Inner::Discrete(e) => Some(e.at(t, action)),
            _ => None,
        }
    }

    /// Asks `pending` whenever nothing holds a discrete-event clock whether it has work, and if so hands `wake` a
    /// hold to do it before lab time moves on (the controller's inbox); `None` on other clocks.
    pub fn on_idle(
        &self,
        pending: impl Fn() -> bool + Send + 'static,
        wake: impl Fn(Hold) + Send + Sync + 'static,
    ) -> Option<IdleHook> {
        match &*self.0 {
            Inner::Discrete(e) => Some(e.on_idle(pending, wake)),
            _ => None,
        }
    }

    /// Makes a discrete-event clock look again whether an idle hook has work or an alarm is due, for work that came
    /// from outside the lab while nothing held it.
    pub fn poke(&self) {
        if let Inner::Discrete(e) = &*self.0 {
            e.poke();
        }
    }

    /// The discrete-event clock's shared state, for the simulated lines' accounting; `None` on other clocks.
    pub(crate) fn events(&self) -> Option<&Arc<Events>> {
        match &*self.0 {
            Inner::Discrete(e) => Some(e),
            _ => None,
        }
    }

    /// Waits a wall duration that a simulated instrument or a link spends (a latency, a backoff): on a
    /// discrete-event clock that duration in lab time, as on the real lab, as a wait of the party this task is;
    /// elsewhere wall time.
    pub async fn wall_wait(&self, wall: Duration) {
        match &*self.0 {
            Inner::Discrete(_) => self.sleep(wall.as_secs_f64()).await,
            _ => tokio::time::sleep(wall).await,
        }
    }

    /// Waits until lab time reaches `t` without waiting as a party: for a bound raced against work that waits by
    /// itself (a step's timeout, a reply's). Armed when called, as [`Clock::sleep`] says.
    pub fn deadline(&self, t: f64) -> impl std::future::Future<Output = ()> + Send + '_ {
        let armed = self.arm(t);
        async move {
            match armed {
                Some(rx) => {
                    if let Ok(hold) = rx.await {
                        adopt(hold);
                    }
                }
                None => self.sleep_until_paced(t).await,
            }
        }
    }

    /// Waits until `lab_seconds` of lab time have passed.
    ///
    /// On a discrete-event clock the alarm is set when this is called, before the returned future is first polled:
    /// a sleep raced in a `select!` against a wait that lets lab time go (a read through [`waiting`]) is then never
    /// passed by lab time before it is armed.
    pub fn sleep(&self, lab_seconds: f64) -> impl std::future::Future<Output = ()> + Send + '_ {
        let until = self.now() + lab_seconds.max(0.0);
        self.sleep_until(until)
    }

    /// Waits until lab time reaches `t` (on a discrete-event clock, as a wait of the party this task is; armed when
    /// called, as [`Clock::sleep`] says).
    pub fn sleep_until(&self, t: f64) -> impl std::future::Future<Output = ()> + Send + '_ {
        let armed = self.arm(t);
        async move {
            match armed {
                Some(rx) => {
                    events::release_party();
                    if let Ok(hold) = rx.await {
                        adopt(hold);
                    }
                }
                None => self.sleep_until_paced(t).await,
            }
        }
    }

    /// Waits, as a wait of the party this task is, until everything else in the lab has done what it does at the
    /// present lab instant (on a discrete-event clock: until nothing else holds lab time, the controller's inbox
    /// included, before lab time moves on); at once on other clocks, which have no instants. For an act whose
    /// outcome for others would otherwise depend on which thread ran first within the instant (a simulated port
    /// that closes while a driver writes to it).
    pub async fn after_instant(&self) {
        let Inner::Discrete(e) = &*self.0 else { return };
        let armed = Self::alarm_at(e, e.now());
        events::release_party();
        if let Ok(hold) = armed.await {
            adopt(hold);
        }
    }

    /// On a discrete-event clock whose time has not reached `t`, an alarm at `t` that answers with the hold of the
    /// one it wakes (the alarm goes if the answer is dropped unread).
    fn arm(&self, t: f64) -> Option<Armed> {
        let Inner::Discrete(e) = &*self.0 else { return None };
        if t <= e.now() {
            return None;
        }
        Some(Self::alarm_at(e, t))
    }

    fn alarm_at(events: &Arc<Events>, t: f64) -> Armed {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let alarm = events.at(t, move |hold| {
            let _ = tx.send(hold);
        });
        Armed { rx, _alarm: alarm }
    }

    async fn sleep_until_paced(&self, t: f64) {
        match &*self.0 {
            Inner::Scaled { .. } => {
                let now = self.now();
                if t > now {
                    tokio::time::sleep(self.wall(t - now)).await;
                }
            }
            Inner::Manual { tick, .. } => {
                let mut rx = tick.subscribe();
                // `wait_for` checks the current value first, so an advance that already happened is not missed.
                let _ = rx.wait_for(|now| *now >= t).await;
            }
            Inner::Stepping { now, .. } => {
                let mut n = now.lock().expect("clock lock");
                *n = n.max(t);
            }
            // Armed by `sleep_until`, or already past.
            Inner::Discrete(_) => {}
        }
    }

    /// Moves a manual clock forward by `seconds`; does nothing to other clocks.
    pub fn advance(&self, seconds: f64) {
        if let Inner::Manual { now, tick, .. } = &*self.0 {
            let mut n = now.lock().expect("clock lock");
            *n += seconds.max(0.0);
            tick.send_replace(*n);
        }
    }
}

/// An alarm armed on a discrete-event clock and the answer it gives when it fires.
struct Armed {
    rx: tokio::sync::oneshot::Receiver<Hold>,
    _alarm: Alarm,
}

impl std::future::Future for Armed {
    type Output = Result<Hold, tokio::sync::oneshot::error::RecvError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_time_runs_faster_than_the_wall() {
        let c = Clock::scaled(1000.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(c.now() >= 20.0, "20 ms at 1000x is at least 20 lab seconds, got {}", c.now());
        assert_eq!(c.wall(1000.0), std::time::Duration::from_secs(1));
    }

    #[tokio::test]
    async fn stepping_time_jumps_to_the_end_of_each_wait() {
        let c = Clock::stepping(400.0);
        c.sleep(10.0).await;
        c.sleep_until(5.0).await;
        assert_eq!(c.now(), 10.0);
        assert_eq!(c.scale(), 400.0);
    }

    /// Two parties woken at the same lab time: one acts (a simulator bringing its port back), the other looks (a
    /// driver's attempt to reopen it). This runtime has one thread and runs them in the order they were woken, the
    /// one that looks first, the order a loaded machine may give; waiting for the end of the instant, it sees the
    /// act all the same.
    #[tokio::test]
    async fn a_party_that_waits_for_the_end_of_the_instant_sees_what_others_did_at_it() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let clock = Clock::discrete();
        let setup = clock.hold();
        let acted = Arc::new(AtomicBool::new(false));
        let looks = tokio::spawn(events::party(Vec::new(), {
            let (clock, acted) = (clock.clone(), Arc::clone(&acted));
            async move {
                clock.sleep(1.0).await;
                clock.after_instant().await;
                (clock.now(), acted.load(Ordering::SeqCst))
            }
        }));
        let acts = tokio::spawn(events::party(Vec::new(), {
            let (clock, acted) = (clock.clone(), Arc::clone(&acted));
            async move {
                clock.sleep(1.0).await;
                acted.store(true, Ordering::SeqCst);
            }
        }));
        tokio::task::yield_now().await;
        drop(setup);
        assert_eq!(looks.await.unwrap(), (1.0, true));
        acts.await.unwrap();
    }

    #[tokio::test]
    async fn manual_time_moves_only_when_advanced() {
        let c = Clock::manual();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep(10.0).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.advance(4.0);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.advance(6.0);
        waiter.await.unwrap();
        assert_eq!(c.now(), 10.0);
    }
}
