//! Scheduling workloads (`lab-workload/v1` JSON): benchmark inputs for the scheduler.
//!
//! A workload fixes each step's instrument and duration, so a schedule's makespan can be compared with the best
//! known. It is not a technician-facing format; see `../shared/bench/workloads/README.md` for its definition.

use serde::Deserialize;

use crate::schedule::planner::{Operation, Problem};
use crate::schedule::resources::{Job, JobStep};

/// A parsed workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Its name.
    pub name: String,
    /// Instrument names, in file order.
    pub devices: Vec<String>,
    /// The jobs.
    pub jobs: Vec<Job>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    name: String,
    devices: Vec<DeviceFile>,
    jobs: Vec<JobFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    name: String,
    #[expect(dead_code, reason = "the kind is descriptive; steps name their device")]
    kind: String,
    capacity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    id: String,
    steps: Vec<StepFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: String,
    device: String,
    duration_s: f64,
    after: Vec<String>,
}

/// Parses a workload; errors name the job and step.
pub fn parse(text: &str) -> Result<Workload, String> {
    let f: File = serde_json::from_str(text).map_err(|e| format!("not a lab-workload/v1 file: {e}"))?;
    if f.format != "lab-workload/v1" {
        return Err(format!("format is `{}`, expected `lab-workload/v1`", f.format));
    }
    if let Some(d) = f.devices.iter().find(|d| d.capacity != 1) {
        return Err(format!("device `{}` has capacity {}; only 1 is supported", d.name, d.capacity));
    }
    let devices: Vec<String> = f.devices.iter().map(|d| d.name.clone()).collect();
    let mut jobs = Vec::new();
    for j in f.jobs {
        let mut steps = Vec::new();
        for s in &j.steps {
            if !devices.contains(&s.device) {
                return Err(format!("job `{}` step `{}` uses unknown device `{}`", j.id, s.id, s.device));
            }
            if !(s.duration_s.is_finite() && s.duration_s >= 0.0) {
                return Err(format!("job `{}` step `{}` has a bad duration {}", j.id, s.id, s.duration_s));
            }
            let after = s
                .after
                .iter()
                .map(|a| {
                    j.steps
                        .iter()
                        .position(|x| &x.id == a)
                        .ok_or_else(|| format!("job `{}` step `{}` runs after unknown `{a}`", j.id, s.id))
                })
                .collect::<Result<Vec<_>, _>>()?;
            steps.push(JobStep {
                name: s.id.clone(),
                on: protocols::InstrumentRef::Named(s.device.clone()),
                action: None,
                duration: s.duration_s,
                after,
                rules: protocols::StepRules::default(),
            });
        }
        jobs.push(Job { name: j.id, steps });
    }
    Ok(Workload { name: f.name, devices, jobs })
}

impl Workload {
    /// The workload as a planner problem (every job released at 0).
    pub fn problem(&self) -> Problem {
        let mut ops = Vec::new();
        for (j, job) in self.jobs.iter().enumerate() {
            let base = ops.len();
            for s in &job.steps {
                let protocols::InstrumentRef::Named(d) = &s.on else { unreachable!("workload steps name devices") };
                ops.push(Operation {
                    job: j,
                    duration: s.duration,
                    candidates: vec![self.devices.iter().position(|x| x == d).expect("checked in parse")],
                    preds: s.after.iter().map(|a| base + a).collect(),
                    release: 0.0,
                    min_wait: 0.0,
                    max_wait: None,
                    fixed: None,
                });
            }
        }
        Problem { resources: self.devices.len(), available: Vec::new(), ops }
    }

    /// How many steps it has.
    pub fn steps(&self) -> usize {
        self.jobs.iter().map(|j| j.steps.len()).sum()
    }
}

/// A random workload shaped like the shared benchmark ones: `jobs` jobs of mostly chained steps over `devices`
/// devices, durations in tens to hundreds of seconds, a few steps with two predecessors. Seeded.
pub fn generate(jobs: usize, devices: usize, seed: u64) -> Workload {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let names: Vec<String> = (0..devices).map(|d| format!("device_{d}")).collect();
    let mut out = Vec::new();
    for j in 0..jobs {
        let n = rng.gen_range(4..=7);
        let mut steps: Vec<JobStep> = Vec::new();
        for k in 0..n {
            let mut after = if k == 0 { vec![] } else { vec![k - 1] };
            if k >= 2 && rng.gen_bool(0.15) {
                // A second branch: this step waits for one more earlier step.
                after = vec![k - 2, k - 1];
                after.dedup();
            } else if k >= 1 && rng.gen_bool(0.1) {
                after = vec![];
            }
            let d = rng.gen_range(0..devices);
            steps.push(JobStep {
                name: format!("s{k}"),
                on: protocols::InstrumentRef::Named(names[d].clone()),
                action: None,
                duration: (rng.gen_range(2..=60) * 10) as f64,
                after,
                rules: protocols::StepRules::default(),
            });
        }
        out.push(Job { name: format!("J{j:03}"), steps });
    }
    Workload { name: format!("generated-{jobs}x{devices}-{seed}"), devices: names, jobs: out }
}
