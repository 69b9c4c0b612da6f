//! A real Slurm cluster (munged, slurmctld, three slurmd "nodes" on this machine, started by
//! `scripts/slurm-cluster.sh`): the scheduler behaviour a Slurm executor relies on: afterok
//! dependencies order jobs, jobs spread over nodes and tell them apart by `$SLURMD_NODENAME`,
//! and a failed parent leaves its dependent pending forever unless it is cancelled.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{run_ok, wait_for};

/// The cluster script of the repository.
fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-cluster.sh")
}

/// A private cluster under a temp dir, stopped (exactly the daemons it started) on drop, also
/// when the test panics.
struct SlurmCluster {
    dir: tempfile::TempDir,
}

impl SlurmCluster {
    /// Starts the cluster and waits until every node is idle. `None` (skip) only when Slurm is
    /// not installed, cannot be installed, and CI is unset.
    fn start() -> Option<SlurmCluster> {
        let cluster = SlurmCluster {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let started = cluster.script("start").output().expect("run slurm-cluster.sh");
        if !started.status.success() {
            let installed = Command::new("sh")
                .args(["-c", "command -v slurmctld && command -v munged"])
                .output()
                .is_ok_and(|o| o.status.success());
            let why = String::from_utf8_lossy(&started.stderr).into_owned();
            if !installed && std::env::var_os("CI").is_none() {
                eprintln!("skipping: Slurm is not installed and could not be installed: {why}");
                return None;
            }
            panic!("slurm-cluster.sh start failed: {why}");
        }
        run_ok(&mut cluster.script("wait"));
        Some(cluster)
    }

    fn script(&self, action: &str) -> Command {
        let mut cmd = Command::new(cluster_script());
        cmd.arg(action).arg(self.dir.path());
        cmd
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm client command talking to this cluster.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    /// Where jobs write (their working directory and `%j.out` files).
    fn jobs_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("jobs");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `sbatch --wrap SCRIPT` with `--dependency=afterok:` on `after`; returns the job id.
    fn submit(&self, script: &str, after: &[&str], extra: &[&str]) -> String {
        let dir = self.jobs_dir();
        let mut cmd = self.client("sbatch");
        cmd.arg("--parsable")
            .arg("-D")
            .arg(&dir)
            .arg("-o")
            .arg(dir.join("%j.out"))
            .args(extra);
        if !after.is_empty() {
            cmd.arg(format!("--dependency=afterok:{}", after.join(":")));
        }
        cmd.arg("--wrap").arg(script);
        run_ok(&mut cmd).trim().to_string()
    }

    /// `scontrol show job -o ID` as its `Key=Value` fields.
    fn job(&self, id: &str) -> std::collections::BTreeMap<String, String> {
        let text = run_ok(self.client("scontrol").args(["show", "job", "-o", id]));
        text.split_whitespace()
            .filter_map(|field| field.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn state(&self, id: &str) -> String {
        self.job(id).get("JobState").cloned().unwrap_or_default()
    }

    /// Waits (bounded) until the job has left the queue's active states; returns its state.
    fn wait_done(&self, id: &str) -> String {
        let active = ["PENDING", "CONFIGURING", "RUNNING", "COMPLETING"];
        let mut state = String::new();
        let finished = wait_for(Duration::from_secs(60), || {
            state = self.state(id);
            !active.contains(&state.as_str())
        });
        assert!(finished, "job {id} still {state} after 60 s");
        state
    }

    fn output(&self, id: &str) -> String {
        fs::read_to_string(self.jobs_dir().join(format!("{id}.out"))).unwrap_or_default()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let _ = self.script("stop").status();
    }
}

/// A diamond of real jobs ordered by afterok runs on at least two nodes, each child seeing its
/// parents' results; a failed parent leaves its child pending with DependencyNeverSatisfied
/// until `scancel` removes it.
#[test]
fn afterok_diamond_spreads_over_nodes_and_failed_parent_needs_scancel() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    // Each job takes a whole node (-c 2 of CPUs=2) and the two middle jobs overlap in time,
    // so the scheduler must put them on different nodes.
    let whole_node = ["-c", "2"];
    let top = cluster.submit(
        "sha256sum /bin/sh | cut -d' ' -f1 > top.txt && echo node=$SLURMD_NODENAME",
        &[],
        &whole_node,
    );
    let left = cluster.submit(
        "sleep 1; rev top.txt > left.txt && echo node=$SLURMD_NODENAME",
        &[&top],
        &whole_node,
    );
    let right = cluster.submit(
        "sleep 1; tr a-f A-F < top.txt > right.txt && echo node=$SLURMD_NODENAME",
        &[&top],
        &whole_node,
    );
    let bottom = cluster.submit(
        "cat left.txt right.txt > bottom.txt && echo node=$SLURMD_NODENAME",
        &[&left, &right],
        &whole_node,
    );
    for id in [&top, &left, &right, &bottom] {
        assert_eq!(
            cluster.wait_done(id),
            "COMPLETED",
            "job {id}: {:?}; output: {}",
            cluster.job(id),
            cluster.output(id)
        );
    }
    let jobs = cluster.jobs_dir();
    let sh_digest = hdist_store::Digest::of(&fs::read("/bin/sh").unwrap()).to_hex();
    let read = |name: &str| fs::read_to_string(jobs.join(name)).unwrap();
    assert_eq!(read("top.txt").trim(), sh_digest);
    let reversed: String = sh_digest.chars().rev().collect();
    assert_eq!(
        read("bottom.txt"),
        format!("{reversed}\n{}\n", sh_digest.to_uppercase()),
        "the bottom job ran after both middle jobs and saw their results"
    );
    let nodes: BTreeSet<String> = [&top, &left, &right, &bottom]
        .iter()
        .filter_map(|id| {
            let out = cluster.output(id);
            out.lines()
                .find_map(|l| l.strip_prefix("node=").map(str::to_string))
        })
        .collect();
    assert!(
        nodes.len() >= 2 && nodes.iter().all(|n| ["n1", "n2", "n3"].contains(&n.as_str())),
        "jobs ran on nodes {nodes:?}, expected at least two of n1..n3"
    );

    // A failing parent: the child never runs and stays pending until cancelled.
    let failing = cluster.submit("echo building; exit 3", &[], &[]);
    let child = cluster.submit("touch child-ran", &[&failing], &[]);
    assert_eq!(cluster.wait_done(&failing), "FAILED");
    let mut reason = String::new();
    let never = wait_for(Duration::from_secs(30), || {
        let job = cluster.job(&child);
        reason = format!("{:?} {:?}", job.get("JobState"), job.get("Reason"));
        job.get("JobState").map(String::as_str) == Some("PENDING")
            && job.get("Reason").map(String::as_str) == Some("DependencyNeverSatisfied")
    });
    assert!(
        never,
        "child of a failed job: {reason}, expected PENDING DependencyNeverSatisfied"
    );
    // It stays so: Slurm does not clean it up by itself.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cluster.state(&child), "PENDING");
    run_ok(cluster.client("scancel").arg(&child));
    assert_eq!(cluster.wait_done(&child), "CANCELLED");
    let queued = run_ok(
        cluster
            .client("squeue")
            .args(["-h", "-j", &child, "-t", "pending"]),
    );
    assert!(queued.trim().is_empty(), "cancelled job still queued: {queued}");
    assert!(!jobs.join("child-ran").exists());
}
