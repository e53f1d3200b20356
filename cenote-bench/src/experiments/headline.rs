//! The headline suite: one or two scenarios per pool kind against its
//! strongest peers (the database ones when the servers' URLs are set), and
//! the seeds' "no pool versus pool" tables, picked by name from the full
//! experiments. `cenote-bench` without a subcommand runs
//! it; the summary and the README table are made of its scenarios.

use super::{databases, http, objects, resources, seeds, tasks, workers, Experiment};

/// One headline scenario: a scenario of the full suite and the
/// implementations it is measured with.
#[derive(Debug)]
pub struct Pick {
    /// Experiment name, e.g. `workers/throughput`.
    pub experiment: &'static str,
    /// Scenario name, as the full experiment names it.
    pub scenario: &'static str,
    /// The implementations measured, by name.
    pub impls: &'static [&'static str],
    /// What the scenario is, in a few words (summary and README table).
    pub label: &'static str,
}

const WORKER_PEERS: &[&str] = &[
    "cenote",
    "threadpool",
    "rayon",
    "rusty_pool",
    "crossbeam-pool",
];
const OBJECT_PEERS: &[&str] = &[
    "cenote",
    "alloc",
    "lockfree-object-pool",
    "sharded-slab",
    "mutex-vec-pool",
];
const RESOURCE_PEERS: &[&str] = &["cenote", "deadpool", "deadpool-unmanaged", "bb8"];

/// The headline scenarios, in the order of the summary.
pub const PICKS: &[Pick] = &[
    Pick {
        experiment: workers::THROUGHPUT,
        scenario: "trivial-1M/size=2",
        impls: WORKER_PEERS,
        label: "workers: 1M trivial tasks, pool of 2",
    },
    Pick {
        experiment: objects::GETPUT,
        scenario: "vec4k-4M/threads=1",
        impls: OBJECT_PEERS,
        label: "objects: 4 KiB Vec get + put, 1 thread",
    },
    Pick {
        experiment: objects::GETPUT,
        scenario: "vec4k-2M/threads=2",
        impls: OBJECT_PEERS,
        label: "objects: 4 KiB Vec get + put, 2 threads",
    },
    Pick {
        experiment: tasks::SEMAPHORE,
        scenario: "1-task/10M",
        impls: &["cenote", "tokio-semaphore"],
        label: "limit: semaphore, 1 task",
    },
    Pick {
        experiment: tasks::SEMAPHORE,
        scenario: "2-tasks-1-thread/turns/1M",
        impls: &["cenote", "tokio-semaphore"],
        label: "limit: semaphore, 2 tasks taking turns",
    },
    Pick {
        experiment: tasks::OVERHEAD,
        scenario: "1M-trivial/cap=1024",
        impls: &["cenote", "tokio-semaphore", "buffer-unordered"],
        label: "tasks: 1M trivial futures, cap 1024",
    },
    Pick {
        experiment: resources::UNCONTENDED,
        scenario: "stub/1-task/1048576",
        impls: RESOURCE_PEERS,
        label: "resources: uncontended, 1 task",
    },
    Pick {
        experiment: resources::CONTENDED,
        scenario: "stub/size=4/tasks=16/1048576",
        impls: RESOURCE_PEERS,
        label: "resources: 16 tasks on 4 resources",
    },
    Pick {
        experiment: databases::POSTGRES,
        scenario: "select1/size=4/tasks=16/20k",
        impls: &["cenote", "deadpool-postgres", "bb8-postgres"],
        label: "PostgreSQL: SELECT 1, 16 tasks on 4 connections",
    },
    Pick {
        experiment: databases::REDIS,
        scenario: "ping/size=4/tasks=16/20k",
        impls: &["cenote", "deadpool-redis", "bb8-redis"],
        label: "Redis: PING, 16 tasks on 4 connections",
    },
    Pick {
        experiment: http::GET,
        scenario: "1KiB/tasks=64/cap=8/40k",
        impls: &["cenote", "hyper-util", "reqwest"],
        label: "HTTP/1.1: GET 1 KiB, 64 tasks, cap 8",
    },
    Pick {
        experiment: http::RACE,
        scenario: "idle-close=20ms/tasks=64/3200",
        impls: &["cenote", "hyper-util", "reqwest"],
        label: "HTTP/1.1 keep-alive race: failed GETs of 3,200",
    },
    Pick {
        experiment: seeds::SEED002,
        scenario: "small-1M/pool=100",
        impls: &[
            "cenote",
            "thread-per-task",
            "threadpool",
            "rusty_pool",
            "crossbeam-pool",
        ],
        label: "seed 002: 1M small tasks, pool of 100 or none",
    },
    Pick {
        experiment: seeds::SEED001,
        scenario: "100k-sleep10ms/unbounded",
        impls: &["cenote", "thread-per-task", "tokio-spawn_blocking"],
        label: "seed 001: 100k jobs x 10 ms, unbounded",
    },
    Pick {
        experiment: seeds::SEED001,
        scenario: "100k-sleep10ms/pool=1000",
        impls: &[
            "cenote",
            "threadpool",
            "rusty_pool",
            "crossbeam-pool",
            "tokio-spawn_blocking",
        ],
        label: "seed 001: 100k jobs x 10 ms, pool of 1000",
    },
];

/// The headline pick of `scenario` in `experiment`, if it is one.
pub fn pick(experiment: &str, scenario: &str) -> Option<&'static Pick> {
    PICKS
        .iter()
        .find(|p| p.experiment == experiment && p.scenario == scenario)
}

/// The headline suite cut out of `full`, the experiments at full size:
/// the experiments in the order of their first pick, each with the picked
/// scenarios (in pick order) and implementations (in the full order).
pub fn plan(full: Vec<Experiment>) -> Vec<Experiment> {
    let mut order: Vec<&str> = Vec::new();
    for p in PICKS {
        if !order.contains(&p.experiment) {
            order.push(p.experiment);
        }
    }
    let mut out: Vec<Experiment> = Vec::new();
    let mut full: Vec<Option<Experiment>> = full.into_iter().map(Some).collect();
    for name in order {
        let Some(mut exp) = full
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| e.name == name))
            .and_then(Option::take)
        else {
            continue;
        };
        let mut cases = Vec::new();
        for p in PICKS.iter().filter(|p| p.experiment == name) {
            cases.extend(
                exp.cases
                    .iter()
                    .filter(|c| c.scenario == p.scenario && p.impls.contains(&c.imp.name()))
                    .cloned(),
            );
        }
        exp.cases = cases;
        if !exp.cases.is_empty() {
            out.push(exp);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::full_plan;
    use crate::experiments::seeds::SeedOpts;

    #[test]
    fn every_pick_names_a_scenario_and_implementations_of_the_full_suite() {
        let full = full_plan(false, &SeedOpts::DEFAULT);
        for p in PICKS {
            let Some(exp) = full.iter().find(|e| e.name == p.experiment) else {
                // Only with CENOTE_PG_URL / CENOTE_REDIS_URL set.
                assert!(
                    p.experiment.starts_with("databases/"),
                    "no experiment {}",
                    p.experiment
                );
                continue;
            };
            for imp in p.impls {
                assert!(
                    exp.cases
                        .iter()
                        .any(|c| c.scenario == p.scenario && c.imp.name() == *imp),
                    "{} has no row {} {imp}",
                    p.experiment,
                    p.scenario
                );
            }
        }
    }

    #[test]
    fn the_suite_holds_exactly_the_picked_rows_with_cenote_first() {
        let suite = plan(full_plan(false, &SeedOpts::DEFAULT));
        let rows: usize = suite.iter().map(|e| e.cases.len()).sum();
        let picked: usize = PICKS
            .iter()
            .filter(|p| suite.iter().any(|e| e.name == p.experiment))
            .map(|p| p.impls.len())
            .sum();
        assert_eq!(rows, picked);
        for exp in &suite {
            for case in &exp.cases {
                let p = pick(exp.name, &case.scenario).expect("a picked scenario");
                assert!(p.impls.contains(&case.imp.name()));
            }
            assert_eq!(exp.cases[0].imp.name(), "cenote");
        }
        assert_eq!(suite[0].name, workers::THROUGHPUT);
        // seed001's two picks share one experiment, in pick order.
        let seed001 = suite.iter().find(|e| e.name == seeds::SEED001).unwrap();
        assert_eq!(seed001.cases[0].scenario, "100k-sleep10ms/unbounded");
        assert_eq!(
            seed001.cases.last().unwrap().scenario,
            "100k-sleep10ms/pool=1000"
        );
    }
}
