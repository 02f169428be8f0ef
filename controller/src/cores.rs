//! Giving the scheduler and the record's writer a core each, when asked.
//!
//! Left to the operating system, the scheduler's thread and the record's writer share one core some of the time even
//! when another is free, or move between cores and work from cold caches: both threads are busy for the whole of a
//! simulated burst, and on a two-core machine there is no core to spare when anything else wakes. On the machine of
//! BENCHMARKS.md that was most of what recording cost the scheduler at 10,000 queued steps (+27 to +36% of its wall
//! time, where with the two threads on a core each it cost +5 to +9%). Pinning is an option (`lab bench dispatch
//! --pin`), never the default: threads pinned by many `lab` processes at once, as a test suite runs them, could not
//! spread over the machine's cores.

/// The cores chosen for the two busiest threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cores {
    /// The core for the thread that runs the scheduler.
    pub scheduler: usize,
    /// The core for the record's writer.
    pub writer: usize,
}

/// Picks two different cores from `allowed`: the scheduler keeps `current` if it may, and the writer takes the next
/// allowed core after it. `None` with fewer than two cores to choose from.
pub fn choose(allowed: &[usize], current: Option<usize>) -> Option<Cores> {
    let mut allowed = allowed.to_vec();
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.len() < 2 {
        return None;
    }
    let at = current.and_then(|c| allowed.iter().position(|&a| a == c)).unwrap_or(0);
    Some(Cores { scheduler: allowed[at], writer: allowed[(at + 1) % allowed.len()] })
}

/// The cores for this thread (as the scheduler's) and the writer, from those this thread may run on (which are the
/// process's, unless this thread was pinned).
pub fn for_this_thread() -> Option<Cores> {
    choose(&allowed(), current())
}

#[cfg(target_os = "linux")]
fn allowed() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    sched_getaffinity(Pid::from_raw(0))
        .map(|set| (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
        .unwrap_or_default()
}

#[cfg(target_os = "linux")]
fn current() -> Option<usize> {
    nix::sched::sched_getcpu().ok()
}

/// Keeps the calling thread on `core` from now on.
#[cfg(target_os = "linux")]
pub fn pin_this_thread(core: usize) -> Result<(), String> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(core).map_err(|e| format!("core {core}: {e}"))?;
    // Pid 0 is the calling thread, not the whole process.
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("cannot keep this thread on core {core}: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn allowed() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn current() -> Option<usize> {
    None
}

/// Keeps the calling thread on `core` from now on (only Linux can be asked).
#[cfg(not(target_os = "linux"))]
pub fn pin_this_thread(core: usize) -> Result<(), String> {
    Err(format!("cannot keep a thread on core {core}: this system does not let lab choose cores"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_keeps_its_core_and_the_writer_takes_the_next() {
        assert_eq!(choose(&[0, 1], Some(0)), Some(Cores { scheduler: 0, writer: 1 }));
        assert_eq!(choose(&[0, 1], Some(1)), Some(Cores { scheduler: 1, writer: 0 }));
        assert_eq!(choose(&[2, 5, 7], Some(7)), Some(Cores { scheduler: 7, writer: 2 }));
        // A current core the process may not use (or none known) gives way to the first allowed one.
        assert_eq!(choose(&[5, 3], Some(0)), Some(Cores { scheduler: 3, writer: 5 }));
        assert_eq!(choose(&[4, 6], None), Some(Cores { scheduler: 4, writer: 6 }));
    }

    #[test]
    fn one_core_is_not_enough() {
        assert_eq!(choose(&[], Some(0)), None);
        assert_eq!(choose(&[3], Some(3)), None);
        assert_eq!(choose(&[3, 3], Some(3)), None);
    }

    /// As the benchmark does it: the scheduler's thread is pinned, then starts the writer, which inherits its core and
    /// must move to its own. On a machine (or in a process) with one core there is no other core to move to: the
    /// test then checks the rest (pinning, inheriting, and no choice offered) and says what it left out.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_started_from_a_pinned_one_moves_to_its_own_core() {
        let allowed_here = allowed();
        assert!(!allowed_here.is_empty(), "this thread may run on no core at all");
        let cores = match for_this_thread() {
            Some(cores) => cores,
            None => {
                assert_eq!(allowed_here.len(), 1, "no choice although {allowed_here:?} are allowed");
                eprintln!("one core only: a thread cannot be shown to move to a core of its own here");
                Cores { scheduler: allowed_here[0], writer: allowed_here[0] }
            }
        };
        std::thread::spawn(move || {
            pin_this_thread(cores.scheduler).unwrap();
            assert_eq!(allowed(), vec![cores.scheduler]);
            std::thread::spawn(move || {
                assert_eq!(allowed(), vec![cores.scheduler], "inherited");
                pin_this_thread(cores.writer).unwrap();
                assert_eq!(allowed(), vec![cores.writer]);
                assert_eq!(current(), Some(cores.writer));
            })
            .join()
            .unwrap();
            // Moving the writer left the scheduler where it was.
            assert_eq!(allowed(), vec![cores.scheduler]);
            assert_eq!(current(), Some(cores.scheduler));
        })
        .join()
        .unwrap();
    }

    /// A thread kept on one core (as a one-core machine keeps every thread) is offered no pair of cores, on any
    /// machine.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_kept_on_one_core_is_offered_no_pair() {
        let core = allowed()[0];
        std::thread::spawn(move || {
            pin_this_thread(core).unwrap();
            assert_eq!(for_this_thread(), None);
        })
        .join()
        .unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_core_this_process_may_not_use_is_refused() {
        assert!(pin_this_thread(usize::MAX).is_err());
    }
}
