//! Clock skew on one member: its JVM's wall clock steps by an offset and back.
//!
//! The images carry a small preload library of our own, `zkmq-clock.so`
//! (`cluster/zkmq-clock.c`), which `zk-start.sh` preloads into the JVM of every
//! node of a cluster started with [`super::ClusterSpec::clock_faults`]; it adds
//! the offset it reads from `/tmp/zkmq-clock` (rereading it every 200 ms) to the
//! wall clock, and this fault writes the offset there. Only `CLOCK_REALTIME`
//! moves, as with an NTP step or a wrong hardware clock: ZooKeeper times sessions
//! and elections by the monotonic clock, which stays true, and stamps znodes'
//! `ctime`/`mtime` (and its log) by the wall clock, which the queue compares with
//! its own to age orphans. Debian's libfaketime does the same but made ZooKeeper
//! twenty times slower here (a lock and a signal-mask change on its paths, and a
//! wrapper around every timed wait), which would have measured something else.

use super::fault::{ClockOffset, Member};
use super::outcome::ClockChange;
use super::Whereabouts;
use super::{Cluster, ClusterError};

/// The file the shim reads the offset from (`zk-start.sh` writes `0` at each start).
const OFFSET_FILE: &str = "/tmp/zkmq-clock";

/// The shim's spelling of an offset: nanoseconds, as decimal text.
fn shim_offset(offset: ClockOffset) -> String {
    (i128::from(offset.millis) * 1_000_000).to_string()
}

impl Cluster {
    /// Steps node `node`'s wall clock by `offset` (zero puts it right). Refused
    /// with [`ClusterError::Unsupported`] when its JVM runs without the shim.
    pub async fn clock_skew(
        &self,
        node: usize,
        offset: ClockOffset,
    ) -> Result<ClockChange, ClusterError> {
        let target = self.container_target(Member::Node(node))?;
        if !self.spec.clock_faults {
            if offset.is_zero() {
                return Ok(ClockChange { node, offset });
            }
            return Err(ClusterError::Unsupported(format!(
                "zk{node}'s JVM runs without the clock shim: the cluster must be started for \
                 clock faults (a scenario with a clock-skew fault does it, or `zkmq cluster \
                 up --clock-faults`)"
            )));
        }
        let Whereabouts { docker, container, .. } = self.whereabouts(Member::Node(node)).await?;
        let state = docker
            .inspect_container(&container)
            .await?
            .map_or_else(|| "missing".to_owned(), |facts| facts.state);
        if state != "running" {
            if offset.is_zero() {
                // Its next start begins with the true time.
                return Ok(ClockChange { node, offset });
            }
            return Err(ClusterError::NotRunning { member: target.member(), state });
        }
        // The shim must be in the image and, once the JVM runs, in the JVM. A JVM
        // still starting reads the file at its first wall-clock call (the start
        // script has already written 0 there), so the offset is written anyway.
        let script = format!(
            "[ -f /usr/lib/zkmq/zkmq-clock.so ] || {{ echo 'no clock shim in the image'; exit 7; }}; \
             j=; for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = java ] && j=$p; done; \
             if [ -n \"$j\" ] && ! grep -q zkmq-clock $j/maps; then echo 'the clock shim is not loaded'; exit 7; fi; \
             printf '%s\\n' '{}' >{OFFSET_FILE}",
            shim_offset(offset)
        );
        let out = docker.exec(&container, &["/bin/sh", "-c", &script]).await?;
        match out.exit_code {
            0 => Ok(ClockChange { node, offset }),
            7 => Err(ClusterError::Unsupported(format!(
                "zk{node}'s JVM runs without the clock shim: its image has none (an image \
                 built by an older recipe, or another image: `zkmq cluster images --force` \
                 rebuilds ours)"
            ))),
            code => Err(ClusterError::CommandFailed {
                container,
                command: format!("step the clock by {offset}"),
                exit_code: code,
                output: out.output.trim().to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_the_shim_reads_them() {
        assert_eq!(shim_offset(ClockOffset { millis: -120_000 }), "-120000000000");
        assert_eq!(shim_offset(ClockOffset { millis: 1_500 }), "1500000000");
        assert_eq!(shim_offset(ClockOffset::ZERO), "0");
    }
}
